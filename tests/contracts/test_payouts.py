"""Push-or-credit payouts: receivers that always revert, re-entrant receivers."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from .helpers import ETH, events, reverts

E18 = 10**18
REENTRANT_CALL = keccak(text="ReentrancyGuardReentrantCall()")[:4]


@pytest.fixture
def reverting(project, deployer):
    return deployer.deploy(project.RevertingReceiver)


@pytest.fixture
def reentrant(project, deployer):
    return deployer.deploy(project.ReentrantReceiver)


def test_reverting_receiver_does_not_block_other_claims(
    settlement,
    eth_setup,
    make_product,
    make_policy,
    make_claim,
    reverting,
    relayer,
    patient,
    stranger,
):
    pool_id, product_id, patient_policy = eth_setup
    bad_policy = make_policy(product_id, holder=reverting)
    receipt = settlement.submitClaim(make_claim(bad_policy).as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].holder == reverting.address
    credited = events(receipt, settlement, "PayoutCredited")[0]
    assert (credited.account, credited.asset, credited.amount) == (reverting.address, ETH, E18)
    assert reverting.balance == 0 and settlement.creditOf(ETH, reverting) == E18
    # The pool's accounting treats the credited amount as paid out.
    assert settlement.getPool(pool_id).balance == 9 * E18
    assert settlement.balance == 10 * E18

    before = patient.balance
    settlement.submitClaim(make_claim(patient_policy).as_tuple(), sender=relayer)
    assert patient.balance - before == E18

    # The receiver withdraws its credit to an address that accepts ETH.
    before = stranger.balance
    receipt = reverting.withdrawTo(settlement, ETH, stranger, sender=stranger)
    ev = events(receipt, settlement, "CreditWithdrawn")[0]
    assert (ev.account, ev.to, ev.amount) == (reverting.address, stranger.address, E18)
    assert stranger.balance - before == E18 - receipt.total_fees_paid
    assert settlement.creditOf(ETH, reverting) == 0
    assert settlement.balance == 8 * E18


def test_reentry_during_claim_push_is_blocked(
    settlement, eth_setup, make_policy, make_claim, reentrant, relayer
):
    _, product_id, _ = eth_setup
    policy_id = make_policy(product_id, holder=reentrant)
    # On receiving, try to re-enter withdrawCredit (swallowing the failure).
    reentrant.configure(
        settlement, settlement.withdrawCredit.encode_input(ETH, reentrant), False, sender=relayer
    )
    receipt = settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    attempts, ok, selector = reentrant.lastAttempt()
    assert (attempts, ok, bytes(selector)) == (1, False, REENTRANT_CALL)
    assert reentrant.balance == E18 and not events(receipt, settlement, "PayoutCredited")


def test_reentrant_claim_is_blocked_and_credited(
    settlement, eth_setup, make_policy, make_claim, reentrant, relayer
):
    _, product_id, _ = eth_setup
    policy_id = make_policy(product_id, holder=reentrant)
    first, second, third = (make_claim(policy_id) for _ in range(3))
    # Re-enter submitClaim with a second claim and bubble the failure: the push fails, the payout is credited.
    reentrant.configure(
        settlement, settlement.submitClaim.encode_input(second.as_tuple()), True, sender=relayer
    )
    receipt = settlement.submitClaim(first.as_tuple(), sender=relayer)
    assert len(events(receipt, settlement, "ClaimPaid")) == 1
    assert events(receipt, settlement, "PayoutCredited")[0].amount == E18
    assert (
        settlement.claimCount() == 1
        and settlement.claimOfCommitment(policy_id, second.input_commitment) == 0
    )

    # Full-gas path: withdrawCredit re-entered (into submitClaim) by the receiver is blocked too.
    reentrant.configure(
        settlement, settlement.submitClaim.encode_input(third.as_tuple()), False, sender=relayer
    )
    receipt = reentrant.withdrawTo(settlement, ETH, reentrant, sender=relayer)
    attempts, ok, selector = reentrant.lastAttempt()
    assert (ok, bytes(selector)) == (False, REENTRANT_CALL)
    assert reentrant.balance == E18 and settlement.creditOf(ETH, reentrant) == 0
    assert settlement.claimCount() == 1
    # The claim that was attempted re-entrantly was never consumed; settled normally, it is pushed.
    reentrant.configure(ETH, b"", False, sender=relayer)  # stop attacking
    settlement.submitClaim(second.as_tuple(), sender=relayer)
    assert reentrant.balance == 2 * E18 and settlement.claimCount() == 2


def test_withdraw_reentry_is_blocked(
    settlement, eth_setup, make_policy, make_claim, reentrant, relayer
):
    _, product_id, _ = eth_setup
    policy_id = make_policy(product_id, holder=reentrant)
    reentrant.configure(
        settlement, b"\xde\xad", True, sender=relayer
    )  # any failing call: push fails
    settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert settlement.creditOf(ETH, reentrant) == E18
    reentrant.configure(
        settlement, settlement.withdrawCredit.encode_input(ETH, reentrant), False, sender=relayer
    )
    reentrant.withdrawTo(settlement, ETH, reentrant, sender=relayer)
    attempts, ok, selector = reentrant.lastAttempt()
    assert (ok, bytes(selector)) == (False, REENTRANT_CALL)
    assert reentrant.balance == E18 and settlement.balance == 9 * E18


def test_withdraw_to_reverting_address_fails_cleanly(
    settlement, eth_setup, make_policy, make_claim, reverting, relayer, stranger
):
    _, product_id, _ = eth_setup
    settlement.submitClaim(
        make_claim(make_policy(product_id, holder=reverting)).as_tuple(), sender=relayer
    )
    with reverts(settlement.PayoutsTransferFailed, asset=ETH, to=reverting.address, amount=E18):
        settlement.withdrawCredit.call(ETH, reverting, sender=reverting.address)
    assert settlement.creditOf(ETH, reverting) == E18
