"""A Governor + TimelockController DAO funds a research bounty through a passed proposal."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from .helpers import (
    CONTEXT_SCALE,
    ETH,
    EVAL_MODEL,
    ONE,
    eval_instances,
    events,
    mock_proof,
    reverts,
)

E18 = 10**18
USD = 10**6
VOTING_DELAY = 1  # blocks (ERC20Votes clock = block number)
VOTING_PERIOD = 10  # blocks
TIMELOCK_DELAY = 2 * 86400  # seconds
SUCCEEDED, QUEUED, EXECUTED = 4, 5, 7
FOR = 1
WEIGHTS = 0x3E16475


@pytest.fixture(scope="module")
def governance(project, deployer, dao):
    token = dao.deploy(project.ResearchDAOToken, 1_000_000 * E18)
    token.invoke_transaction("delegate", dao, sender=dao)  # `token.delegate` is an ape attribute
    assert token.getVotes(dao) == 1_000_000 * E18
    timelock = deployer.deploy(project.ResearchDAOTimelock, TIMELOCK_DELAY, [], [ETH], deployer)
    governor = deployer.deploy(
        project.ResearchDAOGovernor, token, timelock, VOTING_DELAY, VOTING_PERIOD
    )
    timelock.grantRole(timelock.PROPOSER_ROLE(), governor, sender=deployer)
    timelock.grantRole(timelock.CANCELLER_ROLE(), governor, sender=deployer)
    timelock.renounceRole(timelock.DEFAULT_ADMIN_ROLE(), deployer, sender=deployer)
    dao.transfer(timelock, 10 * E18)  # treasury in ETH
    return token, timelock, governor


def pass_proposal(governor, timelock, chain, dao, targets, values, calldatas, description):
    receipt = governor.propose(targets, values, calldatas, description, sender=dao)
    proposal_id = events(receipt, governor, "ProposalCreated")[0].proposalId
    chain.mine(VOTING_DELAY + 1)
    governor.castVote(proposal_id, FOR, sender=dao)
    chain.mine(VOTING_PERIOD + 1)
    assert governor.state(proposal_id) == SUCCEEDED
    desc_hash = keccak(text=description)
    governor.queue(targets, values, calldatas, desc_hash, sender=dao)
    assert governor.state(proposal_id) == QUEUED
    assert governor.proposalEta(proposal_id) == chain.blocks.head.timestamp + TIMELOCK_DELAY
    # The timelock delay is enforced.
    with reverts(timelock.TimelockUnexpectedOperationState):
        governor.execute(targets, values, calldatas, desc_hash, sender=dao)
    chain.mine(deltatime=TIMELOCK_DELAY)
    receipt = governor.execute(targets, values, calldatas, desc_hash, sender=dao)
    assert governor.state(proposal_id) == EXECUTED
    return receipt


def bounty_params(chain, asset, amount, deadline=None):
    deadline = deadline or chain.pending_timestamp + 30 * 86400
    return (str(asset), amount, EVAL_MODEL, 1, CONTEXT_SCALE, ONE * 9 // 10, deadline)


def test_dao_funds_eth_bounty_and_researcher_is_paid(governance, bounty, chain, dao, researcher):
    token, timelock, governor = governance
    params = bounty_params(chain, ETH, 5 * E18)
    calldata = bounty.createBounty.encode_input(params)
    receipt = pass_proposal(
        governor,
        timelock,
        chain,
        dao,
        [bounty.address],
        [5 * E18],
        [calldata],
        "Fund a 5 ETH bounty for a >= 0.9 accuracy benign/malignant classifier",
    )
    [created] = events(receipt, bounty, "BountyCreated")
    assert (created.sponsor, created.amount) == (timelock.address, 5 * E18)
    assert timelock.balance == 5 * E18 and bounty.balance == 5 * E18

    bounty_id = created.bountyId
    salt = keccak(text="researcher salt")
    bounty.commit(
        bounty.submissionCommitment(bounty_id, researcher, WEIGHTS, salt), sender=researcher
    )
    instances = eval_instances(bounty, bounty_id, researcher, WEIGHTS, ONE * 95 // 100)
    before = researcher.balance
    bounty.reveal(
        bounty_id, researcher, WEIGHTS, salt, mock_proof(instances), instances, sender=dao
    )
    assert researcher.balance - before == 5 * E18


def test_dao_funds_erc20_bounty_and_reclaims_it(governance, bounty, usdc, chain, dao, stranger):
    token, timelock, governor = governance
    usdc.mint(timelock, 50_000 * USD, sender=stranger)
    params = bounty_params(chain, usdc, 20_000 * USD, deadline=chain.pending_timestamp + 40 * 86400)
    targets = [usdc.address, bounty.address]
    calldatas = [
        usdc.approve.encode_input(bounty, 20_000 * USD),
        bounty.createBounty.encode_input(params),
    ]
    receipt = pass_proposal(
        governor, timelock, chain, dao, targets, [0, 0], calldatas, "USDC bounty"
    )
    [created] = events(receipt, bounty, "BountyCreated")
    assert (created.sponsor, created.asset, created.amount) == (
        timelock.address,
        usdc.address,
        20_000 * USD,
    )
    assert usdc.balanceOf(timelock) == 30_000 * USD
    # Nobody wins; after the deadline anyone can return the escrow to the DAO treasury (no proposal needed).
    chain.pending_timestamp = params[-1]
    bounty.reclaim(created.bountyId, sender=stranger)
    assert usdc.balanceOf(timelock) == 50_000 * USD
