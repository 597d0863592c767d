"""ClaimSettlement payout rules on a multi-output model: which output a rule reads, ArgMaxIs, validation."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from .conftest import code_hash, fresh_commitment
from .helpers import (
    ARG_MAX_IS,
    AT_LEAST,
    AT_MOST,
    DIAG_MODEL,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    VK_SHA,
    encode_signed,
    events,
    reverts,
)

E18 = 10**18
#: A 3-class model: instances = [inputCommitment, logit0, logit1, logit2].
CNN3 = keccak(text="zkcare/test-cnn3")
CNN3_LAYOUT = (4, 0, 1, 3, OUTPUT_SCALE)


@pytest.fixture
def cnn3(project, registry, chain, deployer):
    """Registers CNN3 v1 (a fresh MockVerifier) and returns its model id."""
    verifier = deployer.deploy(project.MockVerifier)
    registry.registerModel(
        CNN3,
        1,
        verifier,
        code_hash(chain, verifier),
        ONNX_SHA,
        VK_SHA,
        CNN3_LAYOUT,
        sender=deployer,
    )
    assert registry.getModelVersion(CNN3, 1).outputCount == 3
    return CNN3


@pytest.fixture
def cnn3_policy(cnn3, make_pool, make_product, make_policy):
    """``policy(comparison, output, threshold)``: a 2 ETH policy on a fresh CNN3 product paying 1 ETH."""
    pool_id = make_pool()

    def make(comparison: int, output: int, threshold: int = 0) -> int:
        product_id = make_product(
            pool_id, comparison=comparison, output=output, threshold=threshold, model=cnn3
        )
        return make_policy(product_id)

    return make


def submit(settlement, make_claim, relayer, policy_id: int, logits: list[int]):
    """Submit a claim whose proof carries ``logits`` (fixed-point, scale 2^-14) as outputs 0..2."""
    commitment = fresh_commitment()
    instances = [commitment, *(encode_signed(v) for v in logits)]
    claim = make_claim(policy_id, commitment=commitment, instances=instances)
    return settlement.submitClaim(claim.as_tuple(), sender=relayer)


def outcome(settlement, receipt) -> str:
    """Return "paid" or "denied"; asserts exactly one of the two events (neither has an output)."""
    paid = events(receipt, settlement, "ClaimPaid")
    denied = events(receipt, settlement, "ClaimDenied")
    assert len(paid) + len(denied) == 1
    return "paid" if paid else "denied"


# ------------------------------------------------------------------------------------------ AtLeast / AtMost


def test_at_least_reads_the_named_output(settlement, cnn3_policy, make_claim, relayer, patient):
    """AtLeast 0.5 on output 2: paid when logit2 reaches it (whatever outputs 0 and 1 say)."""
    policy_id = cnn3_policy(AT_LEAST, 2, ONE // 2)
    before = patient.balance
    receipt = submit(settlement, make_claim, relayer, policy_id, [9 * ONE, 9 * ONE, ONE // 2])
    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.policyId, paid.holder, paid.amount) == (policy_id, patient.address, E18)
    assert patient.balance == before + E18


def test_at_least_denied_when_the_named_output_misses(settlement, cnn3_policy, make_claim, relayer):
    """AtLeast 0.5 on output 2: denied when logit2 is one unit short, even if others are high."""
    policy_id = cnn3_policy(AT_LEAST, 2, ONE // 2)
    receipt = submit(settlement, make_claim, relayer, policy_id, [9 * ONE, 9 * ONE, ONE // 2 - 1])
    assert not events(receipt, settlement, "ClaimPaid")
    [denied] = events(receipt, settlement, "ClaimDenied")
    assert denied.policyId == policy_id


@pytest.mark.parametrize(
    "logit1,expected", [(-ONE, "paid"), (-ONE + 1, "denied")], ids=["at-threshold", "above"]
)
def test_at_most_reads_the_named_output(
    settlement, cnn3_policy, make_claim, relayer, logit1, expected
):
    """AtMost -1 on output 1: outputs 0 and 2 (far below) do not matter."""
    policy_id = cnn3_policy(AT_MOST, 1, -ONE)
    receipt = submit(settlement, make_claim, relayer, policy_id, [-9 * ONE, logit1, -9 * ONE])
    assert outcome(settlement, receipt) == expected


# ------------------------------------------------------------------------------------------ ArgMaxIs


def test_arg_max_is_paid_when_the_class_wins(settlement, cnn3_policy, make_claim, relayer):
    policy_id = cnn3_policy(ARG_MAX_IS, 1)
    receipt = submit(settlement, make_claim, relayer, policy_id, [ONE, ONE + 1, -ONE])
    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.policyId, paid.amount) == (policy_id, E18)


def test_arg_max_is_denied_when_another_class_wins(settlement, cnn3_policy, make_claim, relayer):
    policy_id = cnn3_policy(ARG_MAX_IS, 1)
    receipt = submit(settlement, make_claim, relayer, policy_id, [ONE, ONE + 1, ONE + 2])
    assert not events(receipt, settlement, "ClaimPaid")
    [denied] = events(receipt, settlement, "ClaimDenied")
    assert denied.policyId == policy_id


@pytest.mark.parametrize(
    "cls,expected", [(0, "paid"), (1, "denied"), (2, "denied")], ids=["class0", "class1", "class2"]
)
def test_arg_max_tie_resolves_to_the_lowest_index(
    settlement, cnn3_policy, make_claim, relayer, cls, expected
):
    """Outputs 0 and 1 tie at the top (2 is lower): the arg-max is 0."""
    policy_id = cnn3_policy(ARG_MAX_IS, cls)
    receipt = submit(settlement, make_claim, relayer, policy_id, [ONE, ONE, ONE - 1])
    assert outcome(settlement, receipt) == expected


def test_arg_max_with_all_outputs_negative(settlement, cnn3_policy, make_claim, relayer):
    """The arg-max starts from output 0, not from zero: all-negative logits still have a winner."""
    policy_id = cnn3_policy(ARG_MAX_IS, 2)
    receipt = submit(settlement, make_claim, relayer, policy_id, [-3 * ONE, -2 * ONE, -ONE])
    assert outcome(settlement, receipt) == "paid"


# ------------------------------------------------------------------------------------------ products


def test_product_stores_and_emits_its_rule(settlement, cnn3, make_pool, insurer):
    pool_id = make_pool()
    receipt = settlement.createProduct(pool_id, cnn3, 1, (AT_MOST, 2, -ONE), E18, sender=insurer)
    [created] = events(receipt, settlement, "ProductCreated")
    assert (
        created.poolId,
        created.modelId,
        created.version,
        created.comparison,
        created.output,
        created.threshold,
        created.payout,
    ) == (pool_id, cnn3, 1, AT_MOST, 2, -ONE, E18)
    product = settlement.getProduct(created.productId)
    assert (product.modelId, product.poolId, product.version, product.retired, product.payout) == (
        cnn3,
        pool_id,
        1,
        False,
        E18,
    )
    assert tuple(product.rule) == (AT_MOST, 2, -ONE)


@pytest.mark.parametrize(
    "rule",
    [(AT_LEAST, 3, 0), (AT_MOST, 2**16 - 1, -ONE), (ARG_MAX_IS, 3, 0), (ARG_MAX_IS, 0, 1)],
    ids=["at-least-past-outputs", "at-most-max-index", "arg-max-past-outputs", "arg-max-threshold"],
)
def test_create_product_rejects_invalid_rule(settlement, cnn3, make_pool, insurer, rule):
    pool_id = make_pool()
    comparison, output, threshold = rule
    with reverts(
        settlement.ClaimSettlementInvalidRule,
        comparison=comparison,
        output=output,
        threshold=threshold,
    ):
        settlement.createProduct(pool_id, cnn3, 1, rule, E18, sender=insurer)


def test_one_output_model_only_has_output_zero(settlement, make_pool, insurer):
    """The diagnostic model registers outputCount 1: output 1 is rejected, ArgMaxIs 0 is allowed."""
    pool_id = make_pool()
    with reverts(settlement.ClaimSettlementInvalidRule, comparison=AT_LEAST, output=1, threshold=0):
        settlement.createProduct(pool_id, DIAG_MODEL, 1, (AT_LEAST, 1, 0), E18, sender=insurer)
    receipt = settlement.createProduct(
        pool_id, DIAG_MODEL, 1, (ARG_MAX_IS, 0, 0), E18, sender=insurer
    )
    assert events(receipt, settlement, "ProductCreated")[0].comparison == ARG_MAX_IS


def test_rule_of_an_unregistered_version_is_refused(settlement, make_pool, insurer):
    pool_id = make_pool()
    with reverts(settlement.ClaimSettlementModelNotActive, modelId=CNN3, version=1):
        settlement.createProduct(pool_id, CNN3, 1, (ARG_MAX_IS, 0, 0), E18, sender=insurer)
