"""ResearchBounty: commit-reveal awards, front-running, same-block races, deadlines, reclaim."""

from __future__ import annotations

import pytest

from .conftest import code_hash
from .helpers import (
    B_AWARDED,
    B_OPEN,
    B_RECLAIMED,
    ETH,
    EVAL_MODEL,
    FIELD_MODULUS,
    NO_INDEX,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    VK_SHA,
    b32,
    encode_signed,
    events,
    mock_proof,
    reverts,
)

E18 = 10**18
BENCH = 0xBE7C4
WEIGHTS = 0x3E16475
MIN_METRIC = ONE * 9 // 10  # e.g. accuracy >= 0.9


def eval_instances(weights=WEIGHTS, metric=MIN_METRIC, benchmark=BENCH):
    return [benchmark, weights, encode_signed(metric)]


@pytest.fixture(scope="session")
def make_bounty(bounty, deployer, chain):
    def make(
        *,
        sponsor=None,
        asset=ETH,
        amount=E18,
        min_metric=MIN_METRIC,
        deadline=None,
        benchmark=BENCH,
        labels=0,
        weights_index=1,
        labels_index=NO_INDEX,
        version=1,
    ):
        deadline = deadline or chain.pending_timestamp + 7 * 86400
        params = (
            str(asset),
            amount,
            EVAL_MODEL,
            version,
            benchmark,
            labels,
            weights_index,
            labels_index,
            min_metric,
            deadline,
        )
        receipt = bounty.createBounty(
            params, value=amount if asset == ETH else 0, sender=sponsor or deployer
        )
        return receipt.decode_logs(bounty.BountyCreated)[0].bountyId

    return make


def commit(bounty, bounty_id, who, weights=WEIGHTS, salt=None, sender=None):
    salt = salt or b32(f"salt-{who.address}-{weights}")
    h = bounty.submissionCommitment(bounty_id, who, weights, salt)
    bounty.commit(h, sender=sender or who)
    return salt


def reveal_args(bounty_id, researcher, salt, weights=WEIGHTS, instances=None):
    instances = instances or eval_instances(weights)
    return (bounty_id, researcher, weights, salt, mock_proof(instances), instances)


class Block:
    """Put several raw transactions into ONE block (automine off), then restore automine."""

    gas = 1_000_000

    def __init__(self, chain):
        self.chain = chain
        self.w3 = chain.provider.web3
        self.hashes = []

    def __enter__(self):
        self.chain.provider.make_request("evm_setAutomine", [False])
        return self

    def send(self, sender, contract, data, tip_gwei=1):
        base = self.w3.eth.get_block("latest")["baseFeePerGas"]
        tx = {
            "from": sender.address,
            "to": contract.address,
            "data": bytes(data),
            "gas": self.gas,
            "maxPriorityFeePerGas": tip_gwei * 10**9,
            "maxFeePerGas": 2 * base + tip_gwei * 10**9,
        }
        self.hashes.append(self.w3.eth.send_transaction(tx))
        return len(self.hashes) - 1

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.chain.provider.make_request("evm_mine", [])
        finally:
            self.chain.provider.make_request("evm_setAutomine", [True])
        if exc[0] is None:
            self.receipts = [self.w3.eth.get_transaction_receipt(h) for h in self.hashes]
            assert len({r["blockNumber"] for r in self.receipts}) == 1, (
                "transactions landed in different blocks"
            )
        return False


def test_bounty_awarded(bounty, make_bounty, researcher, relayer, deployer):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    before = researcher.balance
    receipt = bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=relayer)  # relayed
    [ev] = events(receipt, bounty, "BountyAwarded")
    assert (ev.bountyId, ev.researcher, ev.weightsCommitment, ev.metric, ev.amount) == (
        bounty_id,
        researcher.address,
        WEIGHTS,
        MIN_METRIC,
        E18,
    )
    assert researcher.balance - before == E18
    b = bounty.getBounty(bounty_id)
    assert (b.status, b.winner) == (B_AWARDED, researcher.address)
    assert bounty.balance == 0
    with reverts(
        bounty.ResearchBountyAlreadyAwarded, bountyId=bounty_id, winner=researcher.address
    ):
        bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=researcher)
    with reverts(
        bounty.ResearchBountyAlreadyAwarded, bountyId=bounty_id, winner=researcher.address
    ):
        bounty.reclaim(bounty_id, sender=deployer)


def test_created_event_and_record(bounty, deployer, chain):
    deadline = chain.pending_timestamp + 1000
    params = (ETH, E18, EVAL_MODEL, 1, BENCH, 77, 1, NO_INDEX, -ONE, deadline)
    receipt = bounty.createBounty(params, value=E18, sender=deployer)
    [ev] = events(receipt, bounty, "BountyCreated")
    assert (
        ev.sponsor,
        ev.asset,
        ev.amount,
        ev.modelId,
        ev.version,
        ev.benchmarkCommitment,
        ev.minMetric,
        ev.deadline,
    ) == (deployer.address, ETH, E18, EVAL_MODEL, 1, BENCH, -ONE, deadline)
    b = bounty.getBounty(ev.bountyId)
    assert (b.status, b.labelsCommitment, b.weightsIndex, b.labelsIndex, b.amount) == (
        B_OPEN,
        77,
        1,
        NO_INDEX,
        E18,
    )


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_metric_threshold(bounty, make_bounty, researcher, delta):
    bounty_id = make_bounty()
    metric = MIN_METRIC + delta
    salt = commit(bounty, bounty_id, researcher)
    args = reveal_args(bounty_id, researcher, salt, instances=eval_instances(metric=metric))
    if delta < 0:
        with reverts(
            bounty.ResearchBountyMetricBelowMinimum,
            bountyId=bounty_id,
            metric=metric,
            minMetric=MIN_METRIC,
        ):
            bounty.reveal(*args, sender=researcher)
    else:
        assert (
            events(bounty.reveal(*args, sender=researcher), bounty, "BountyAwarded")[0].metric
            == metric
        )


def test_negative_metric_threshold(bounty, make_bounty, researcher):
    """Signed metrics (e.g. negative log-loss) decode from r - |v|."""
    bounty_id = make_bounty(min_metric=-2 * ONE)
    salt = commit(bounty, bounty_id, researcher)
    instances = eval_instances(metric=-2 * ONE - 1)
    assert instances[2] == FIELD_MODULUS - 2 * ONE - 1
    with reverts(bounty.ResearchBountyMetricBelowMinimum, metric=-2 * ONE - 1, minMetric=-2 * ONE):
        bounty.reveal(
            *reveal_args(bounty_id, researcher, salt, instances=instances), sender=researcher
        )
    instances = eval_instances(metric=-2 * ONE)
    bounty.reveal(*reveal_args(bounty_id, researcher, salt, instances=instances), sender=researcher)
    assert bounty.getBounty(bounty_id).status == B_AWARDED


def test_submission_must_match_bounty_and_commitment(bounty, make_bounty, researcher):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    with reverts(bounty.ResearchBountyBenchmarkMismatch, expected=BENCH, actual=BENCH + 1):
        bounty.reveal(
            *reveal_args(
                bounty_id, researcher, salt, instances=eval_instances(benchmark=BENCH + 1)
            ),
            sender=researcher,
        )
    # A valid proof for other weights than the committed ones.
    with reverts(bounty.ResearchBountyWeightsMismatch, committed=WEIGHTS, proven=WEIGHTS + 1):
        bounty.reveal(
            *reveal_args(
                bounty_id, researcher, salt, instances=eval_instances(weights=WEIGHTS + 1)
            ),
            sender=researcher,
        )
    bad_salt = b32("wrong salt")
    h = bounty.submissionCommitment(bounty_id, researcher, WEIGHTS, bad_salt)
    with reverts(bounty.ResearchBountyUnknownCommitment, commitment=h):
        bounty.reveal(*reveal_args(bounty_id, researcher, bad_salt), sender=researcher)
    args = list(reveal_args(bounty_id, researcher, salt))
    args[4] = b"\x00" * 64
    with reverts(bounty.ModelRegistryProofRejected, modelId=EVAL_MODEL, version=1):
        bounty.reveal(*args, sender=researcher)
    with reverts(bounty.ModelRegistryInstanceNotInField, index=2, value=FIELD_MODULUS):
        inst = [BENCH, WEIGHTS, FIELD_MODULUS]
        bounty.reveal(
            bounty_id, researcher, WEIGHTS, salt, mock_proof(inst), inst, sender=researcher
        )
    with reverts(bounty.ResearchBountyUnknown, bountyId=99):
        bounty.reveal(*reveal_args(99, researcher, salt), sender=researcher)
    zero = "0x0000000000000000000000000000000000000000"
    with reverts(bounty.PayoutsZeroRecipient):
        bounty.reveal(*reveal_args(bounty_id, zero, salt), sender=researcher)


def test_labels_commitment_instance(
    bounty, registry, eval_verifier, make_bounty, researcher, deployer, chain
):
    """A v2 evaluation circuit exposing the labels commitment: [benchmark, weights, labels, metric]."""
    registry.registerModel(
        EVAL_MODEL,
        2,
        eval_verifier,
        code_hash(chain, eval_verifier),
        ONNX_SHA,
        VK_SHA,
        (4, 0, 3, 1, OUTPUT_SCALE),
        sender=deployer,
    )
    labels = 0x1ABE15
    bounty_id = make_bounty(version=2, labels=labels, weights_index=1, labels_index=2)
    salt = commit(bounty, bounty_id, researcher)
    wrong = [BENCH, WEIGHTS, labels + 1, encode_signed(ONE)]
    with reverts(bounty.ResearchBountyLabelsMismatch, expected=labels, actual=labels + 1):
        bounty.reveal(
            bounty_id, researcher, WEIGHTS, salt, mock_proof(wrong), wrong, sender=researcher
        )
    right = [BENCH, WEIGHTS, labels, encode_signed(ONE)]
    bounty.reveal(bounty_id, researcher, WEIGHTS, salt, mock_proof(right), right, sender=researcher)
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_metric_is_the_first_output_and_outputs_are_not_commitments(
    bounty, registry, eval_verifier, make_bounty, researcher, deployer, chain
):
    """A v2 evaluation circuit with two outputs: [benchmark, weights, labels, metric, extra]."""
    registry.registerModel(
        EVAL_MODEL,
        2,
        eval_verifier,
        code_hash(chain, eval_verifier),
        ONNX_SHA,
        VK_SHA,
        (5, 0, 3, 2, OUTPUT_SCALE),
        sender=deployer,
    )
    for w, labels in [(3, NO_INDEX), (4, NO_INDEX), (1, 3), (1, 4)]:
        with reverts(bounty.ResearchBountyInvalidLayout, weightsIndex=w, labelsIndex=labels):
            make_bounty(version=2, weights_index=w, labels_index=labels)
    labels = 0x1ABE15
    bounty_id = make_bounty(version=2, labels=labels, weights_index=1, labels_index=2)
    salt = commit(bounty, bounty_id, researcher)
    # The second output is high, the first (the metric) is one unit short.
    low = [BENCH, WEIGHTS, labels, encode_signed(MIN_METRIC - 1), encode_signed(ONE)]
    with reverts(
        bounty.ResearchBountyMetricBelowMinimum,
        bountyId=bounty_id,
        metric=MIN_METRIC - 1,
        minMetric=MIN_METRIC,
    ):
        bounty.reveal(bounty_id, researcher, WEIGHTS, salt, mock_proof(low), low, sender=researcher)
    ok = [BENCH, WEIGHTS, labels, encode_signed(MIN_METRIC), encode_signed(-ONE)]
    receipt = bounty.reveal(
        bounty_id, researcher, WEIGHTS, salt, mock_proof(ok), ok, sender=researcher
    )
    assert events(receipt, bounty, "BountyAwarded")[0].metric == MIN_METRIC


def test_create_bounty_validation(bounty, registry, deployer, guardian, chain):
    now = chain.pending_timestamp
    base = [ETH, E18, EVAL_MODEL, 1, BENCH, 0, 1, NO_INDEX, ONE, now + 1000]

    def params(**kw):
        p = list(base)
        for k, v in kw.items():
            p[
                [
                    "asset",
                    "amount",
                    "model",
                    "version",
                    "bench",
                    "labels",
                    "w",
                    "l",
                    "min",
                    "deadline",
                ].index(k)
            ] = v
        return tuple(p)

    for w, labels in [(0, NO_INDEX), (2, NO_INDEX), (3, NO_INDEX), (1, 1), (1, 0), (1, 5)]:
        with reverts(bounty.ResearchBountyInvalidLayout, weightsIndex=w, labelsIndex=labels):
            bounty.createBounty(params(w=w, l=labels), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyInvalidDeadline, deadline=now - 1):
        bounty.createBounty(params(deadline=now - 1), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyInvalidCommitment, commitment=FIELD_MODULUS):
        bounty.createBounty(params(bench=FIELD_MODULUS), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyModelNotActive, modelId=EVAL_MODEL, version=2):
        bounty.createBounty(params(version=2), value=E18, sender=deployer)
    with reverts(bounty.PayoutsValueMismatch, expected=E18, actual=1):
        bounty.createBounty(params(), value=1, sender=deployer)
    registry.revokeModel(EVAL_MODEL, 1, sender=guardian)
    with reverts(bounty.ResearchBountyModelNotActive, modelId=EVAL_MODEL, version=1):
        bounty.createBounty(params(), value=E18, sender=deployer)


def test_revoked_model_blocks_award_and_sponsor_reclaims(
    bounty, registry, make_bounty, researcher, guardian, deployer, chain
):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    registry.revokeModel(EVAL_MODEL, 1, sender=guardian)
    with reverts(bounty.ModelRegistryVersionRevoked, modelId=EVAL_MODEL, version=1):
        bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=researcher)
    chain.pending_timestamp = bounty.getBounty(bounty_id).deadline
    before = deployer.balance
    bounty.reclaim(bounty_id, sender=researcher)
    assert deployer.balance - before == E18


def test_commit_twice(bounty, researcher):
    h = bounty.submissionCommitment(1, researcher, WEIGHTS, b32("s"))
    receipt = bounty.commit(h, sender=researcher)
    ev = events(receipt, bounty, "SubmissionCommitted")[0]
    assert (ev.commitment, ev.committer, ev.blockNumber) == (
        h,
        researcher.address,
        receipt.block_number,
    )
    with reverts(bounty.ResearchBountyAlreadyCommitted, commitment=h):
        bounty.commit(h, sender=researcher)


# ------------------------------------------------------------------------------------------ front-running


def test_copier_cannot_claim_with_own_address(bounty, make_bounty, researcher, copier):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    # The copier lifts weights commitment, salt and proof from the researcher's pending reveal.
    args = reveal_args(bounty_id, copier, salt)
    h = bounty.submissionCommitment(bounty_id, copier, WEIGHTS, salt)
    with reverts(bounty.ResearchBountyUnknownCommitment, commitment=h):
        bounty.reveal(*args, sender=copier)
    # Replaying the researcher's exact transaction only pays the researcher.
    before = researcher.balance
    bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=copier)
    assert researcher.balance - before == E18
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_front_running_in_the_same_block(bounty, make_bounty, researcher, copier, chain):
    """Automine off: the copier sees the reveal in the mempool and races it with a higher tip, both by
    substituting its address and by committing + revealing in the same block. It never gets paid."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)  # committed in an earlier block
    copier_salt = b32("copier")
    copier_commit = bounty.submissionCommitment(bounty_id, copier, WEIGHTS, copier_salt)
    researcher_before, copier_before = researcher.balance, copier.balance

    with Block(chain) as block:
        stolen = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty_id, copier, salt)),
            tip_gwei=50,
        )
        committed = block.send(
            copier, bounty, bounty.commit.encode_input(copier_commit), tip_gwei=40
        )
        rushed = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty_id, copier, copier_salt)),
            tip_gwei=30,
        )
        honest = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty_id, researcher, salt)),
            tip_gwei=1,
        )

    r = block.receipts
    assert [r[i]["status"] for i in (stolen, committed, rushed, honest)] == [0, 1, 0, 1]
    # The copier's transactions were ordered first (higher tips) and still lost.
    assert (
        r[stolen]["transactionIndex"]
        < r[rushed]["transactionIndex"]
        < r[honest]["transactionIndex"]
    )
    assert bounty.getBounty(bounty_id).winner == researcher.address
    assert (
        researcher.balance - researcher_before
        == E18 - r[honest]["gasUsed"] * r[honest]["effectiveGasPrice"]
    )
    assert copier.balance < copier_before
    # Its own commitment, revealed a block later, is too late.
    with reverts(
        bounty.ResearchBountyAlreadyAwarded, bountyId=bounty_id, winner=researcher.address
    ):
        bounty.reveal(*reveal_args(bounty_id, copier, copier_salt), sender=copier)


def test_reveal_in_commit_block_is_too_early(bounty, make_bounty, researcher, chain):
    bounty_id = make_bounty()
    salt = b32("fresh")
    h = bounty.submissionCommitment(bounty_id, researcher, WEIGHTS, salt)
    with Block(chain) as block:
        block.send(researcher, bounty, bounty.commit.encode_input(h))
        early = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty_id, researcher, salt)),
        )
    assert block.receipts[early]["status"] == 0
    assert bounty.commitBlock(h) == block.receipts[0]["blockNumber"]
    with reverts(
        bounty.ResearchBountyRevealTooEarly, commitment=h, revealableAt=bounty.commitBlock(h) + 1
    ):
        bounty.reveal.call(
            *reveal_args(bounty_id, researcher, salt),
            sender=researcher.address,
            block_id=bounty.commitBlock(h),
        )
    bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=researcher)  # next block: fine
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_two_valid_submissions_in_one_block(bounty, make_bounty, researcher, stranger, chain):
    bounty_id = make_bounty()
    other_weights = WEIGHTS + 1
    salt_a = commit(bounty, bounty_id, researcher)
    salt_b = commit(bounty, bounty_id, stranger, weights=other_weights)
    balance = bounty.balance
    with Block(chain) as block:
        a = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty_id, researcher, salt_a)),
        )
        b = block.send(
            stranger,
            bounty,
            bounty.reveal.encode_input(
                *reveal_args(bounty_id, stranger, salt_b, weights=other_weights)
            ),
            tip_gwei=2,
        )
    statuses = sorted(block.receipts[i]["status"] for i in (a, b))
    assert statuses == [0, 1]
    awarded = [
        log
        for i in (a, b)
        for log in bounty.BountyAwarded.from_receipt(chain.get_receipt(block.hashes[i].hex()))
    ]
    assert len(awarded) == 1 and awarded[0].researcher == stranger.address  # higher tip went first
    assert balance - bounty.balance == E18


def test_reentrant_researcher(project, bounty, make_bounty, deployer, relayer):
    """A researcher contract re-entering reclaim() during the award push is stopped by the guard."""
    receiver = deployer.deploy(project.ReentrantReceiver)
    bounty_id = make_bounty()
    receiver.configure(bounty, bounty.reclaim.encode_input(bounty_id), False, sender=relayer)
    salt = commit(bounty, bounty_id, receiver, sender=relayer)  # anyone may register the commitment
    bounty.reveal(*reveal_args(bounty_id, receiver, salt), sender=relayer)
    attempts, ok, selector = receiver.lastAttempt()
    assert (attempts, ok) == (1, False)
    assert bytes(selector) == bytes.fromhex("3ee5aeb5")  # ReentrancyGuardReentrantCall()
    assert receiver.balance == E18 and bounty.getBounty(bounty_id).status == B_AWARDED


def test_reverting_researcher_is_credited(
    project, bounty, make_bounty, deployer, relayer, stranger
):
    receiver = deployer.deploy(project.RevertingReceiver)
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, receiver, sender=relayer)
    receipt = bounty.reveal(*reveal_args(bounty_id, receiver, salt), sender=relayer)
    assert events(receipt, bounty, "PayoutCredited")[0].account == receiver.address
    before = stranger.balance
    receiver.withdrawTo(bounty, ETH, stranger, sender=relayer)
    assert stranger.balance - before == E18 and bounty.balance == 0


# ------------------------------------------------------------------------------------------ deadlines


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["t-1", "t", "t+1"])
def test_reveal_at_deadline(bounty, make_bounty, researcher, chain, offset):
    """Reveals are accepted while block.timestamp < deadline."""
    deadline = chain.pending_timestamp + 1000
    bounty_id = make_bounty(deadline=deadline)
    salt = commit(bounty, bounty_id, researcher)
    chain.pending_timestamp = deadline + offset
    args = reveal_args(bounty_id, researcher, salt)
    if offset < 0:
        bounty.reveal(*args, sender=researcher)
        assert bounty.getBounty(bounty_id).status == B_AWARDED
    else:
        with reverts(bounty.ResearchBountyDeadlinePassed, bountyId=bounty_id, deadline=deadline):
            bounty.reveal(*args, sender=researcher, gas=1_000_000)
        assert chain.blocks.head.timestamp == deadline + offset


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["t-1", "t", "t+1"])
def test_reclaim_at_deadline(bounty, make_bounty, deployer, stranger, chain, offset):
    """Reclaim from block.timestamp >= deadline; anyone may trigger it, the sponsor is paid."""
    deadline = chain.pending_timestamp + 1000
    bounty_id = make_bounty(deadline=deadline)
    chain.pending_timestamp = deadline + offset
    if offset < 0:
        with reverts(
            bounty.ResearchBountyDeadlineNotReached, bountyId=bounty_id, deadline=deadline
        ):
            bounty.reclaim(bounty_id, sender=stranger, gas=1_000_000)
        assert chain.blocks.head.timestamp == deadline - 1
        return
    before = deployer.balance
    receipt = bounty.reclaim(bounty_id, sender=stranger)
    assert chain.blocks.head.timestamp == deadline + offset
    ev = events(receipt, bounty, "BountyReclaimed")[0]
    assert (ev.bountyId, ev.sponsor, ev.amount) == (bounty_id, deployer.address, E18)
    assert deployer.balance - before == E18
    assert bounty.getBounty(bounty_id).status == B_RECLAIMED
    with reverts(bounty.ResearchBountyAlreadyReclaimed, bountyId=bounty_id):
        bounty.reclaim(bounty_id, sender=stranger)


def test_erc20_bounty_with_fee_token(bounty, fot, make_bounty, deployer, researcher):
    fot.mint(deployer, 100 * E18, sender=deployer)
    fot.approve(bounty, 100 * E18, sender=deployer)
    bounty_id = make_bounty(asset=fot, amount=100 * E18)
    assert bounty.getBounty(bounty_id).amount == 99 * E18 == fot.balanceOf(bounty)
    salt = commit(bounty, bounty_id, researcher)
    bounty.reveal(*reveal_args(bounty_id, researcher, salt), sender=researcher)
    assert fot.balanceOf(researcher) == 99 * E18 * 99 // 100
    assert fot.balanceOf(bounty) == 0
