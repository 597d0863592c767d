"""ResearchBounty: commit-reveal awards, proof binding (bounty, researcher, contract, chain),
front-running, same-block races, deadlines, reclaim."""

from __future__ import annotations

import pytest

from prover.models import bounty_eval

from .conftest import code_hash
from .helpers import (
    B_AWARDED,
    B_OPEN,
    B_RECLAIMED,
    CONTEXT_LIMBS,
    CONTEXT_SCALE,
    ETH,
    EVAL_MODEL,
    FIELD_MODULUS,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    VK_SHA,
    b32,
    context_instances,
    encode_signed,
    eval_instances,
    events,
    mock_proof,
    reverts,
)

E18 = 10**18
WEIGHTS = 0x3E16475
MIN_METRIC = ONE * 9 // 10  # e.g. accuracy >= 0.9
#: Index of context limb 0 in the evaluation instances [weights, metric, limbs...].
LIMB0 = 2


@pytest.fixture(scope="session")
def make_bounty(bounty, deployer, chain):
    def make(
        *,
        contract=None,
        sponsor=None,
        asset=ETH,
        amount=E18,
        min_metric=MIN_METRIC,
        deadline=None,
        version=1,
        context_scale=CONTEXT_SCALE,
    ):
        target = contract or bounty
        deadline = deadline or chain.pending_timestamp + 7 * 86400
        params = (str(asset), amount, EVAL_MODEL, version, context_scale, min_metric, deadline)
        receipt = target.createBounty(
            params, value=amount if asset == ETH else 0, sender=sponsor or deployer
        )
        return receipt.decode_logs(target.BountyCreated)[0].bountyId

    return make


def commit(bounty, bounty_id, who, weights=WEIGHTS, salt=None, sender=None):
    salt = salt or b32(f"salt-{who.address}-{weights}")
    h = bounty.submissionCommitment(bounty_id, who, weights, salt)
    bounty.commit(h, sender=sender or who)
    return salt


def reveal_args(
    bounty,
    bounty_id,
    researcher,
    salt,
    *,
    weights=WEIGHTS,
    metric=MIN_METRIC,
    context_scale=CONTEXT_SCALE,
    instances=None,
):
    """``reveal`` arguments; by default with a (mock) proof made for this bounty and researcher."""
    if instances is None:
        instances = eval_instances(bounty, bounty_id, researcher, weights, metric, context_scale)
    return (bounty_id, researcher, weights, salt, mock_proof(instances), instances)


def first_bad_limb(instances, expected):
    """The context limb ``reveal`` reports: the first one that differs from the expected proof's."""
    return next(i for i in range(CONTEXT_LIMBS) if instances[LIMB0 + i] != expected[LIMB0 + i])


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
    receipt = bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=relayer)
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
        bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
    with reverts(
        bounty.ResearchBountyAlreadyAwarded, bountyId=bounty_id, winner=researcher.address
    ):
        bounty.reclaim(bounty_id, sender=deployer)


def test_created_event_and_record(bounty, deployer, chain):
    deadline = chain.pending_timestamp + 1000
    params = (ETH, E18, EVAL_MODEL, 1, 7, -ONE, deadline)
    receipt = bounty.createBounty(params, value=E18, sender=deployer)
    [ev] = events(receipt, bounty, "BountyCreated")
    assert (
        ev.sponsor,
        ev.asset,
        ev.amount,
        ev.modelId,
        ev.version,
        ev.minMetric,
        ev.deadline,
    ) == (deployer.address, ETH, E18, EVAL_MODEL, 1, -ONE, deadline)
    assert ev.bountyId == bounty.bountyCount()
    b = bounty.getBounty(ev.bountyId)
    assert (
        b.sponsor,
        b.deadline,
        b.status,
        b.contextScale,
        b.asset,
        b.version,
        bytes(b.modelId),
        b.minMetric,
        b.amount,
        b.winner,
    ) == (deployer.address, deadline, B_OPEN, 7, ETH, 1, EVAL_MODEL, -ONE, E18, ETH)


def test_constants_match_the_prover(bounty):
    assert bounty.CONTEXT_LIMBS() == bounty_eval.CONTEXT_LIMBS == CONTEXT_LIMBS
    assert bounty.CONTEXT_LIMB_BITS() == bounty_eval.CONTEXT_LIMB_BITS
    assert bounty.MAX_CONTEXT_SCALE() == 32
    assert bounty_eval.OUTPUT_COUNT == 1 + CONTEXT_LIMBS
    # the circuit's layout: [commitment, metric, context limbs] (these tests' mock layout keeps
    # a second commitment before the metric: the contract reads whatever the registry says)
    assert bounty_eval.INSTANCE_COUNT == bounty_eval.METRIC_INDEX + 1 + CONTEXT_LIMBS


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_metric_threshold(bounty, make_bounty, researcher, delta):
    bounty_id = make_bounty()
    metric = MIN_METRIC + delta
    salt = commit(bounty, bounty_id, researcher)
    args = reveal_args(bounty, bounty_id, researcher, salt, metric=metric)
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
    args = reveal_args(bounty, bounty_id, researcher, salt, metric=-2 * ONE - 1)
    assert args[-1][1] == FIELD_MODULUS - 2 * ONE - 1
    with reverts(bounty.ResearchBountyMetricBelowMinimum, metric=-2 * ONE - 1, minMetric=-2 * ONE):
        bounty.reveal(*args, sender=researcher)
    bounty.reveal(
        *reveal_args(bounty, bounty_id, researcher, salt, metric=-2 * ONE), sender=researcher
    )
    assert bounty.getBounty(bounty_id).status == B_AWARDED


def test_metric_is_the_first_output(bounty, make_bounty, researcher):
    """outputs[0] is the metric; the context limbs after it (large, positive) never count as it."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    low = reveal_args(bounty, bounty_id, researcher, salt, metric=MIN_METRIC - 1)
    assert max(low[-1][LIMB0:]) > MIN_METRIC
    with reverts(
        bounty.ResearchBountyMetricBelowMinimum,
        bountyId=bounty_id,
        metric=MIN_METRIC - 1,
        minMetric=MIN_METRIC,
    ):
        bounty.reveal(*low, sender=researcher)
    receipt = bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
    assert events(receipt, bounty, "BountyAwarded")[0].metric == MIN_METRIC


def test_submission_must_match_commitment_and_registry(bounty, make_bounty, researcher):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    # A valid proof (with this submission's context) for other weights than the committed ones.
    other = eval_instances(bounty, bounty_id, researcher, WEIGHTS + 1, MIN_METRIC)
    with reverts(bounty.ResearchBountyWeightsMismatch, committed=WEIGHTS, proven=WEIGHTS + 1):
        bounty.reveal(
            *reveal_args(bounty, bounty_id, researcher, salt, instances=other), sender=researcher
        )
    bad_salt = b32("wrong salt")
    h = bounty.submissionCommitment(bounty_id, researcher, WEIGHTS, bad_salt)
    with reverts(bounty.ResearchBountyUnknownCommitment, commitment=h):
        bounty.reveal(*reveal_args(bounty, bounty_id, researcher, bad_salt), sender=researcher)
    args = list(reveal_args(bounty, bounty_id, researcher, salt))
    args[4] = b"\x00" * 64
    with reverts(bounty.ModelRegistryProofRejected, modelId=EVAL_MODEL, version=1):
        bounty.reveal(*args, sender=researcher)
    inst = reveal_args(bounty, bounty_id, researcher, salt)[-1]
    inst[1] = FIELD_MODULUS
    with reverts(bounty.ModelRegistryInstanceNotInField, index=1, value=FIELD_MODULUS):
        bounty.reveal(
            bounty_id, researcher, WEIGHTS, salt, mock_proof(inst), inst, sender=researcher
        )
    old = [0xBE7C4, WEIGHTS, encode_signed(ONE)]  # the former [benchmark, weights, metric] layout
    with reverts(
        bounty.ModelRegistryInstanceCountMismatch, expected=LIMB0 + CONTEXT_LIMBS, actual=3
    ):
        bounty.reveal(bounty_id, researcher, WEIGHTS, salt, mock_proof(old), old, sender=researcher)
    with reverts(bounty.ResearchBountyUnknown, bountyId=99):
        bounty.reveal(*reveal_args(bounty, 99, researcher, salt), sender=researcher)
    with reverts(bounty.PayoutsZeroRecipient):
        bounty.reveal(*reveal_args(bounty, bounty_id, ETH, salt), sender=researcher)
    bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_create_bounty_validation(bounty, registry, deployer, guardian, chain):
    now = chain.pending_timestamp
    fields = ["asset", "amount", "model", "version", "scale", "min", "deadline"]
    base = [ETH, E18, EVAL_MODEL, 1, CONTEXT_SCALE, ONE, now + 1000]

    def params(**kw):
        p = list(base)
        for k, v in kw.items():
            p[fields.index(k)] = v
        return tuple(p)

    for deadline in (now - 1, now, 2**40):
        chain.pending_timestamp = now
        with reverts(bounty.ResearchBountyInvalidDeadline, deadline=deadline):
            bounty.createBounty(params(deadline=deadline), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyInvalidContextScale, contextScale=33):
        bounty.createBounty(params(scale=33), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyInvalidContextScale, contextScale=255):
        bounty.createBounty(params(scale=255), value=E18, sender=deployer)
    with reverts(bounty.ResearchBountyModelNotActive, modelId=EVAL_MODEL, version=2):
        bounty.createBounty(params(version=2), value=E18, sender=deployer)
    with reverts(bounty.PayoutsValueMismatch, expected=E18, actual=1):
        bounty.createBounty(params(), value=1, sender=deployer)
    registry.revokeModel(EVAL_MODEL, 1, sender=guardian)
    with reverts(bounty.ResearchBountyModelNotActive, modelId=EVAL_MODEL, version=1):
        bounty.createBounty(params(), value=E18, sender=deployer)
    assert bounty.bountyCount() == 0


@pytest.mark.parametrize("output_count", [1, CONTEXT_LIMBS, CONTEXT_LIMBS + 2])
def test_create_bounty_needs_the_context_outputs(
    bounty, registry, eval_verifier, make_bounty, deployer, chain, output_count
):
    """An evaluation model must output the metric and exactly CONTEXT_LIMBS context limbs."""
    registry.registerModel(
        EVAL_MODEL,
        2,
        eval_verifier,
        code_hash(chain, eval_verifier),
        ONNX_SHA,
        VK_SHA,
        (2 + output_count, 0, 2, output_count, OUTPUT_SCALE),
        sender=deployer,
    )
    with reverts(bounty.ResearchBountyNoContextOutputs, outputCount=output_count):
        make_bounty(version=2)
    assert bounty.bountyCount() == 0


@pytest.mark.parametrize("scale", [0, 1, 32])
def test_context_scale_bounds(bounty, make_bounty, researcher, scale):
    """Scales 0..32 are accepted and the limbs are compared at the bounty's scale."""
    bounty_id = make_bounty(context_scale=scale)
    assert bounty.getBounty(bounty_id).contextScale == scale
    salt = commit(bounty, bounty_id, researcher)
    args = reveal_args(bounty, bounty_id, researcher, salt, context_scale=scale)
    bounty.reveal(*args, sender=researcher)
    assert bounty.getBounty(bounty_id).winner == researcher.address


@pytest.mark.parametrize("scale", [CONTEXT_SCALE - 1, CONTEXT_SCALE + 1, 0])
def test_proof_at_another_context_scale(bounty, make_bounty, researcher, scale):
    """A proof whose context outputs are at another fixed-point scale carries another context."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    forged = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC, scale)
    expected = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC)
    with reverts(
        bounty.ResearchBountyContextMismatch,
        bountyId=bounty_id,
        researcher=researcher,
        limb=first_bad_limb(forged, expected),
    ):
        bounty.reveal(
            *reveal_args(bounty, bounty_id, researcher, salt, instances=forged), sender=researcher
        )


@pytest.mark.parametrize("limb", range(CONTEXT_LIMBS))
@pytest.mark.parametrize("delta", [1, -1])
def test_every_context_limb_is_checked(bounty, make_bounty, researcher, limb, delta):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    inst = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC)
    inst[LIMB0 + limb] = (inst[LIMB0 + limb] + delta) % FIELD_MODULUS
    with reverts(
        bounty.ResearchBountyContextMismatch, bountyId=bounty_id, researcher=researcher, limb=limb
    ):
        bounty.reveal(
            *reveal_args(bounty, bounty_id, researcher, salt, instances=inst), sender=researcher
        )


def test_submission_context(project, bounty, registry, deployer, researcher, stranger, chain_id):
    """144 bits of keccak(chainid, contract, bountyId, researcher); the prover's mirror agrees."""
    other = deployer.deploy(project.ResearchBounty, registry, 1)
    seen = set()
    for contract in (bounty, other):
        for bounty_id in (0, 1, 2, 2**256 - 1):
            for who in (researcher, stranger):
                context = contract.submissionContext(bounty_id, who)
                assert context == bounty_eval.submission_context(
                    chain_id, contract.address, bounty_id, who.address
                )
                assert 0 <= context < 1 << (CONTEXT_LIMBS * 24)
                seen.add(context)
    assert len(seen) == 2 * 4 * 2
    assert bounty_eval.submission_context(
        chain_id + 1, bounty.address, 1, researcher.address
    ) != bounty.submissionContext(1, researcher)


def test_revoked_model_blocks_award_and_sponsor_reclaims(
    bounty, registry, make_bounty, researcher, guardian, deployer, chain
):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    registry.revokeModel(EVAL_MODEL, 1, sender=guardian)
    with reverts(bounty.ModelRegistryVersionRevoked, modelId=EVAL_MODEL, version=1):
        bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
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


# ------------------------------------------------------------------------------------------ binding


def test_proof_replayed_on_another_bounty(bounty, make_bounty, researcher):
    """A revealed proof for bounty A is worthless on bounty B (same model, same weights)."""
    a, b = make_bounty(), make_bounty()
    salt_a = commit(bounty, a, researcher)
    salt_b = commit(bounty, b, researcher)
    revealed = reveal_args(bounty, a, researcher, salt_a)
    bounty.reveal(*revealed, sender=researcher)
    proof, instances = revealed[4], revealed[5]
    expected = eval_instances(bounty, b, researcher, WEIGHTS, MIN_METRIC)
    with reverts(
        bounty.ResearchBountyContextMismatch,
        bountyId=b,
        researcher=researcher,
        limb=first_bad_limb(instances, expected),
    ):
        bounty.reveal(b, researcher, WEIGHTS, salt_b, proof, instances, sender=researcher)
    assert bounty.getBounty(b).status == B_OPEN
    bounty.reveal(*reveal_args(bounty, b, researcher, salt_b), sender=researcher)  # its own proof
    assert bounty.getBounty(b).winner == researcher.address


def test_proof_replayed_by_another_researcher(bounty, make_bounty, researcher, copier, chain):
    """A copier who commits to the researcher's (public) weights commitment, and gets the rightful
    reveal kept out of the chain for longer than the reveal delay, still cannot use the proof."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    honest = reveal_args(bounty, bounty_id, researcher, salt)
    copier_salt = commit(bounty, bounty_id, copier)  # its own commitment, same weights
    chain.mine(5)
    expected = eval_instances(bounty, bounty_id, copier, WEIGHTS, MIN_METRIC)
    with reverts(
        bounty.ResearchBountyContextMismatch,
        bountyId=bounty_id,
        researcher=copier,
        limb=first_bad_limb(honest[5], expected),
    ):
        bounty.reveal(bounty_id, copier, WEIGHTS, copier_salt, honest[4], honest[5], sender=copier)
    bounty.reveal(*honest, sender=copier)  # relaying the honest reveal pays the researcher
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_proof_replayed_on_another_contract(project, bounty, registry, make_bounty, researcher):
    """The same bounty id, model and weights on a second ResearchBounty: the context differs."""
    a = make_bounty()
    other = researcher.deploy(project.ResearchBounty, registry, 1)
    for _ in range(a):
        b = make_bounty(contract=other)
    assert b == a
    salt = commit(bounty, a, researcher)
    salt_other = commit(other, b, researcher)
    assert salt_other == salt  # same salt, same weights, same id: only the contract differs
    revealed = reveal_args(bounty, a, researcher, salt)
    bounty.reveal(*revealed, sender=researcher)
    expected = eval_instances(other, b, researcher, WEIGHTS, MIN_METRIC)
    with reverts(
        other.ResearchBountyContextMismatch,
        bountyId=b,
        researcher=researcher,
        limb=first_bad_limb(revealed[5], expected),
    ):
        other.reveal(*revealed, sender=researcher)
    assert other.getBounty(b).status == B_OPEN
    other.reveal(*reveal_args(other, b, researcher, salt_other), sender=researcher)
    assert other.getBounty(b).winner == researcher.address


def test_proof_for_another_chain(bounty, make_bounty, researcher, chain_id):
    """A proof made for the same contract address, bounty and researcher on another chain."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    foreign = bounty_eval.submission_context(
        chain_id + 1, bounty.address, bounty_id, researcher.address
    )
    forged = context_instances(WEIGHTS, MIN_METRIC, foreign)
    expected = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC)
    with reverts(
        bounty.ResearchBountyContextMismatch,
        bountyId=bounty_id,
        researcher=researcher,
        limb=first_bad_limb(forged, expected),
    ):
        bounty.reveal(
            *reveal_args(bounty, bounty_id, researcher, salt, instances=forged), sender=researcher
        )
    bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_weights_are_checked_before_the_context(bounty, make_bounty, researcher, stranger):
    """Another researcher's proof, for other weights, fails on the weights first."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    theirs = eval_instances(bounty, bounty_id, stranger, WEIGHTS + 7, MIN_METRIC)
    with reverts(bounty.ResearchBountyWeightsMismatch, committed=WEIGHTS, proven=WEIGHTS + 7):
        bounty.reveal(
            *reveal_args(bounty, bounty_id, researcher, salt, instances=theirs), sender=researcher
        )


# ------------------------------------------------------------------------------------------ front-running


def test_copier_cannot_claim_with_own_address(bounty, make_bounty, researcher, copier):
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)
    # The copier lifts weights commitment, salt and proof from the researcher's pending reveal.
    lifted = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC)
    args = reveal_args(bounty, bounty_id, copier, salt, instances=lifted)
    h = bounty.submissionCommitment(bounty_id, copier, WEIGHTS, salt)
    with reverts(bounty.ResearchBountyUnknownCommitment, commitment=h):
        bounty.reveal(*args, sender=copier)
    # Replaying the researcher's exact transaction only pays the researcher.
    before = researcher.balance
    bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=copier)
    assert researcher.balance - before == E18
    assert bounty.getBounty(bounty_id).winner == researcher.address


def test_front_running_in_the_same_block(bounty, make_bounty, researcher, copier, chain):
    """Automine off: the copier sees the reveal in the mempool and races it with a higher tip, both by
    substituting its address and by committing + revealing in the same block. It never gets paid."""
    bounty_id = make_bounty()
    salt = commit(bounty, bounty_id, researcher)  # committed in an earlier block
    copier_salt = b32("copier")
    copier_commit = bounty.submissionCommitment(bounty_id, copier, WEIGHTS, copier_salt)
    lifted = eval_instances(bounty, bounty_id, researcher, WEIGHTS, MIN_METRIC)  # the honest proof
    researcher_before, copier_before = researcher.balance, copier.balance

    with Block(chain) as block:
        stolen = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(
                *reveal_args(bounty, bounty_id, copier, salt, instances=lifted)
            ),
            tip_gwei=50,
        )
        committed = block.send(
            copier, bounty, bounty.commit.encode_input(copier_commit), tip_gwei=40
        )
        rushed = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(
                *reveal_args(bounty, bounty_id, copier, copier_salt, instances=lifted)
            ),
            tip_gwei=30,
        )
        honest = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty, bounty_id, researcher, salt)),
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
        bounty.reveal(
            *reveal_args(bounty, bounty_id, copier, copier_salt, instances=lifted), sender=copier
        )


def test_reveal_in_commit_block_is_too_early(bounty, make_bounty, researcher, chain):
    bounty_id = make_bounty()
    salt = b32("fresh")
    h = bounty.submissionCommitment(bounty_id, researcher, WEIGHTS, salt)
    with Block(chain) as block:
        block.send(researcher, bounty, bounty.commit.encode_input(h))
        early = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(*reveal_args(bounty, bounty_id, researcher, salt)),
        )
    assert block.receipts[early]["status"] == 0
    assert bounty.commitBlock(h) == block.receipts[0]["blockNumber"]
    with reverts(
        bounty.ResearchBountyRevealTooEarly, commitment=h, revealableAt=bounty.commitBlock(h) + 1
    ):
        bounty.reveal.call(
            *reveal_args(bounty, bounty_id, researcher, salt),
            sender=researcher.address,
            block_id=bounty.commitBlock(h),
        )
    bounty.reveal(
        *reveal_args(bounty, bounty_id, researcher, salt), sender=researcher
    )  # next block: fine
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
            bounty.reveal.encode_input(*reveal_args(bounty, bounty_id, researcher, salt_a)),
        )
        b = block.send(
            stranger,
            bounty,
            bounty.reveal.encode_input(
                *reveal_args(bounty, bounty_id, stranger, salt_b, weights=other_weights)
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
    bounty.reveal(*reveal_args(bounty, bounty_id, receiver, salt), sender=relayer)
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
    receipt = bounty.reveal(*reveal_args(bounty, bounty_id, receiver, salt), sender=relayer)
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
    args = reveal_args(bounty, bounty_id, researcher, salt)
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
    bounty.reveal(*reveal_args(bounty, bounty_id, researcher, salt), sender=researcher)
    assert fot.balanceOf(researcher) == 99 * E18 * 99 // 100
    assert fot.balanceOf(bounty) == 0
