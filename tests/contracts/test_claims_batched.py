"""ClaimSettlement.submitClaimsBatched: claims on one model version, one batch verification.

Mock verifiers here (MockBatchVerifier in Pattern mode: proof i is valid iff it is the mock proof
of its instances, else ``Halo2BatchVerifierProofRejected(i)``); real EZKL proofs in
``test_real_batch_claims.py``. All or none: every failure below leaves no trace.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import code_hash
from .helpers import (
    BATCH_COMMITTED,
    DIAG_MODEL,
    ETH,
    EVAL_MODEL,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    PROOF_COMMITMENT,
    VK_SHA,
    committed_proof,
    encode_signed,
    events,
    point_commitment,
    reverts,
)

E18 = 10**18
PATTERN = 5  # MockBatchVerifier.Mode.Pattern
NO_INDEX = 2**256 - 1


@pytest.fixture
def batched_verifier(project, chain, registry, deployer):
    """A MockBatchVerifier (Pattern mode) registered for DIAG_MODEL v1 by the registrar."""
    mock = deployer.deploy(project.MockBatchVerifier)
    mock.setMode(PATTERN, 0, sender=deployer)
    registry.registerBatchVerifier(DIAG_MODEL, 1, mock, code_hash(chain, mock), sender=deployer)
    return mock


def tuples(*claims: Any) -> list[tuple]:
    return [c.as_tuple() for c in claims]


def assert_untouched(settlement: Any, *claims: Any) -> None:
    """Nothing of a failed batch was recorded."""
    assert settlement.claimCount() == 0
    for c in claims:
        assert settlement.claimOfRecord(c.policy_id, c.record_nullifier) == 0
        assert settlement.claimOfCommitment(c.policy_id, c.input_commitment) == 0


# ------------------------------------------------------------------------------ settles


def test_batched_claims_are_paid_or_denied_each_by_its_output(
    project,
    settlement,
    batched_verifier,
    eth_setup,
    make_policy,
    make_claim,
    deployer,
    patient,
    stranger,
):
    """Anyone may send a batch; ids, events and payouts are those of submitClaim one by one."""
    pool_id, product_id, policy_id = eth_setup
    reverting = deployer.deploy(project.RevertingReceiver)
    credited_policy = make_policy(product_id, holder=reverting)
    second_policy = make_policy(product_id)
    paid = make_claim(policy_id, output=ONE)
    denied = make_claim(policy_id, output=-ONE)
    credited = make_claim(credited_policy, output=ONE)
    other = make_claim(second_policy, output=ONE)
    batch = tuples(paid, denied, credited, other)

    assert list(settlement.submitClaimsBatched.call(batch, sender=stranger)) == [1, 2, 3, 4]
    before = patient.balance
    receipt = settlement.submitClaimsBatched(batch, sender=stranger)

    assert [
        (e.claimId, e.policyId, e.holder, e.amount)
        for e in events(receipt, settlement, "ClaimPaid")
    ] == [
        (1, policy_id, patient.address, E18),
        (3, credited_policy, reverting.address, E18),
        (4, second_policy, patient.address, E18),
    ]
    assert [(e.claimId, e.policyId) for e in events(receipt, settlement, "ClaimDenied")] == [
        (2, policy_id)
    ]
    [credit] = events(receipt, settlement, "PayoutCredited")
    assert (credit.account, credit.asset, credit.amount) == (reverting.address, ETH, E18)
    assert patient.balance - before == 2 * E18
    assert settlement.creditOf(ETH, reverting) == E18
    assert settlement.claimCount() == 4
    for claim_id, c in enumerate((paid, denied, credited, other), start=1):
        assert settlement.claimOfRecord(c.policy_id, c.record_nullifier) == claim_id
        assert settlement.claimOfCommitment(c.policy_id, c.input_commitment) == claim_id
    pool = settlement.getPool(pool_id)
    assert (pool.balance, pool.reserved) == (7 * E18, 6 * E18 - 3 * E18)
    assert settlement.getPolicy(policy_id).paid == E18


def test_batched_claims_pay_each_pool_in_its_own_asset(
    settlement,
    batched_verifier,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    usdc,
    patient,
    relayer,
):
    eth_policy = make_policy(make_product(make_pool()))
    usdc_pool = make_pool(usdc, fund=10 * 10**6)
    usdc_policy = make_policy(make_product(usdc_pool, payout=10**6), coverage=2 * 10**6)
    before = (patient.balance, usdc.balanceOf(patient))
    receipt = settlement.submitClaimsBatched(
        tuples(make_claim(eth_policy), make_claim(usdc_policy)), sender=relayer
    )
    assert [e.amount for e in events(receipt, settlement, "ClaimPaid")] == [E18, 10**6]
    assert (patient.balance - before[0], usdc.balanceOf(patient) - before[1]) == (E18, 10**6)


def test_batched_claims_on_one_policy_share_its_coverage(
    settlement, batched_verifier, make_pool, make_product, make_policy, make_claim, relayer
):
    """The second claim gets what the first left (1.5 ETH coverage, 1 ETH payout)."""
    policy_id = make_policy(make_product(make_pool()), coverage=3 * E18 // 2)
    receipt = settlement.submitClaimsBatched(
        tuples(make_claim(policy_id), make_claim(policy_id)), sender=relayer
    )
    assert [e.amount for e in events(receipt, settlement, "ClaimPaid")] == [E18, E18 // 2]
    assert settlement.getPolicy(policy_id).reserved == 0


def test_batched_claim_past_the_coverage_fails_the_batch(
    settlement, batched_verifier, eth_setup, make_claim, relayer
):
    """Like submitClaim, a claim on a policy whose coverage an earlier claim used up is refused."""
    _, _, policy_id = eth_setup  # 2 ETH coverage, 1 ETH payout
    claims = [make_claim(policy_id) for _ in range(3)]
    with reverts(settlement.ClaimSettlementCoverageExhausted, policyId=policy_id):
        settlement.submitClaimsBatched(tuples(*claims), sender=relayer)
    assert_untouched(settlement, *claims)


# ------------------------------------------------------------------------------ all or none


def test_a_bad_proof_fails_the_batch_with_its_index_then_the_rest_settle(
    settlement, batched_verifier, eth_setup, make_policy, make_claim, relayer
):
    _, product_id, policy_id = eth_setup
    claims = [make_claim(make_policy(product_id)) for _ in range(3)]
    claims[1].proof = b"\x00" * 64
    with reverts(settlement.ModelRegistryBatchRejected, modelId=DIAG_MODEL, version=1, index=1):
        settlement.submitClaimsBatched(tuples(*claims), sender=relayer)
    assert_untouched(settlement, *claims)

    # The relay isolates the named claim: the rest settle as a smaller batch, the bad one alone
    # fails with the single verifier's error.
    receipt = settlement.submitClaimsBatched(tuples(claims[0], claims[2]), sender=relayer)
    assert [e.claimId for e in events(receipt, settlement, "ClaimPaid")] == [1, 2]
    with reverts(settlement.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=1):
        settlement.submitClaim(claims[1].as_tuple(), sender=relayer)


def test_an_unnamed_batch_failure_is_isolated_through_submit_claims(
    settlement, batched_verifier, eth_setup, make_policy, make_claim, relayer, deployer
):
    """Only the pairing failed (no index): re-sent through submitClaims, each claim runs alone."""
    _, product_id, _ = eth_setup
    claims = [make_claim(make_policy(product_id)) for _ in range(3)]
    claims[2].proof = b"\x00" * 64
    batched_verifier.setMode(2, 0, sender=deployer)  # FailPairing
    with reverts(
        settlement.ModelRegistryBatchRejected, modelId=DIAG_MODEL, version=1, index=NO_INDEX
    ):
        settlement.submitClaimsBatched(tuples(*claims), sender=relayer)
    assert_untouched(settlement, *claims)
    receipt = settlement.submitClaims(tuples(*claims), sender=relayer)
    assert [e.claimId for e in events(receipt, settlement, "ClaimPaid")] == [1, 2]
    assert [e.index for e in events(receipt, settlement, "ClaimRejected")] == [2]


def test_batched_claims_need_the_versions_batch_verifier(
    settlement, eth_setup, make_claim, relayer
):
    _, _, policy_id = eth_setup
    claim = make_claim(policy_id)
    with reverts(settlement.ModelRegistryNoBatchVerifier, modelId=DIAG_MODEL, version=1):
        settlement.submitClaimsBatched(tuples(claim), sender=relayer)
    assert_untouched(settlement, claim)


def test_only_a_registrar_may_route_claims_to_a_batch_verifier(
    project, chain, registry, settlement, eth_setup, make_claim, stranger
):
    """An attacker's accept-all batch verifier cannot be registered, so it settles nothing."""
    rogue = stranger.deploy(project.MockBatchVerifier)
    with reverts(
        registry.AccessControlUnauthorizedAccount,
        account=stranger.address,
        neededRole=registry.REGISTRAR_ROLE(),
    ):
        registry.registerBatchVerifier(
            DIAG_MODEL, 1, rogue, code_hash(chain, rogue), sender=stranger
        )
    _, _, policy_id = eth_setup
    forged = make_claim(policy_id)
    forged.proof = b"\x00" * 64
    with reverts(settlement.ModelRegistryNoBatchVerifier, modelId=DIAG_MODEL, version=1):
        settlement.submitClaimsBatched(tuples(forged), sender=stranger)


def test_a_revoked_version_settles_no_batch(
    settlement, registry, batched_verifier, eth_setup, make_claim, relayer, guardian
):
    _, _, policy_id = eth_setup
    claim = make_claim(policy_id)
    registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    with reverts(settlement.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
        settlement.submitClaimsBatched(tuples(claim), sender=relayer)


def test_empty_batch_is_refused(settlement, batched_verifier, relayer):
    with reverts(settlement.ClaimSettlementEmptyBatch):
        settlement.submitClaimsBatched([], sender=relayer)


def test_a_batch_is_one_model_version(
    settlement,
    batched_verifier,
    eth_setup,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    relayer,
):
    _, _, policy_id = eth_setup
    eval_policy = make_policy(make_product(make_pool(), model=EVAL_MODEL))
    claims = [make_claim(policy_id), make_claim(eval_policy)]
    with reverts(
        settlement.ClaimSettlementBatchMixedModels, index=1, modelId=EVAL_MODEL, version=1
    ):
        settlement.submitClaimsBatched(tuples(*claims), sender=relayer)
    assert_untouched(settlement, *claims)


def test_paused_settlement_takes_no_batch(
    settlement, batched_verifier, eth_setup, make_claim, relayer, deployer
):
    _, _, policy_id = eth_setup
    settlement.pause(sender=deployer)
    with reverts(settlement.EnforcedPause):
        settlement.submitClaimsBatched(tuples(make_claim(policy_id)), sender=relayer)


# ------------------------------------------------------------------------------ replay protection


def test_a_record_or_commitment_twice_in_one_batch_fails_it(
    settlement, batched_verifier, eth_setup, make_claim, relayer
):
    _, _, policy_id = eth_setup
    first = make_claim(policy_id)
    same_record = make_claim(policy_id, record=first.record_nullifier)
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=policy_id,
        recordNullifier=first.record_nullifier,
        claimId=1,
    ):
        settlement.submitClaimsBatched(tuples(first, same_record), sender=relayer)
    same_proof = make_claim(policy_id, commitment=first.input_commitment, record=b"\x07" * 32)
    with reverts(
        settlement.ClaimSettlementCommitmentAlreadyUsed,
        policyId=policy_id,
        inputCommitment=first.input_commitment,
        claimId=1,
    ):
        settlement.submitClaimsBatched(tuples(first, same_proof), sender=relayer)
    assert_untouched(settlement, first, same_record, same_proof)


def test_a_settled_claim_replayed_in_a_batch_fails_it(
    settlement, batched_verifier, eth_setup, make_policy, make_claim, relayer
):
    _, product_id, _ = eth_setup
    policy_id = make_policy(product_id, coverage=5 * E18)
    settled = make_claim(policy_id)
    settlement.submitClaim(settled.as_tuple(), sender=relayer)
    batch = tuples(make_claim(policy_id), settled)
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=policy_id,
        recordNullifier=settled.record_nullifier,
        claimId=1,
    ):
        settlement.submitClaimsBatched(batch, sender=relayer)
    # and a whole batch sent twice settles once
    fresh = tuples(make_claim(policy_id))
    settlement.submitClaimsBatched(fresh, sender=relayer)
    with reverts(settlement.ClaimSettlementRecordAlreadyClaimed, policyId=policy_id, claimId=2):
        settlement.submitClaimsBatched(fresh, sender=relayer)
    assert settlement.claimCount() == 2


def test_batched_claims_keep_every_attestation_check(
    settlement, batched_verifier, eth_setup, make_claim, other_hospital, relayer, chain
):
    _, _, policy_id = eth_setup
    good = make_claim(policy_id)
    forged = make_claim(policy_id)
    forged.signature = b"\x02" * 65
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=forged.hospital):
        settlement.submitClaimsBatched(tuples(good, forged), sender=relayer)
    untrusted = make_claim(policy_id, signer=other_hospital)
    with reverts(settlement.ClaimSettlementUntrustedHospital, hospital=other_hospital.address):
        settlement.submitClaimsBatched(tuples(good, untrusted), sender=relayer)
    expired = make_claim(
        policy_id, attested_at=chain.pending_timestamp - 7200, expiry=chain.pending_timestamp - 1
    )
    with reverts(settlement.ClaimSettlementAttestationExpired, expiry=expired.attestation_expiry):
        settlement.submitClaimsBatched(tuples(expired, good), sender=relayer)
    with reverts(settlement.ClaimSettlementUnknownPolicy, policyId=999):
        settlement.submitClaimsBatched(tuples(good, make_claim(999)), sender=relayer)
    assert_untouched(settlement, good)


def test_a_proof_of_another_input_fails_the_batch(
    settlement, batched_verifier, eth_setup, make_claim, relayer
):
    """The proof is valid, but for a commitment the hospital did not attest."""
    _, _, policy_id = eth_setup
    good = make_claim(policy_id)
    swapped = make_claim(policy_id, attested_commitment=good.input_commitment + 1)
    with reverts(
        settlement.ClaimSettlementCommitmentMismatch,
        attested=good.input_commitment + 1,
        proven=swapped.instances[0],
    ):
        settlement.submitClaimsBatched(tuples(good, swapped), sender=relayer)
    assert_untouched(settlement, good)


def test_batched_claim_in_the_grace_after_expiry(
    settlement, batched_verifier, make_pool, make_product, make_policy, make_claim, relayer, chain
):
    product_id = make_product(make_pool())
    expiry = chain.pending_timestamp + 100
    policy_id = make_policy(product_id, expiry=expiry)
    in_time = make_claim(policy_id, attested_at=expiry, expiry=expiry + 3600)
    late = make_claim(policy_id, attested_at=expiry + 1, expiry=expiry + 3600)
    chain.mine(deltatime=3600)
    with reverts(
        settlement.ClaimSettlementAttestedAfterExpiry,
        policyId=policy_id,
        expiry=expiry,
        attestedAt=expiry + 1,
    ):
        settlement.submitClaimsBatched(tuples(in_time, late), sender=relayer)
    receipt = settlement.submitClaimsBatched(tuples(in_time), sender=relayer)
    assert [e.policyId for e in events(receipt, settlement, "ClaimPaid")] == [policy_id]


def test_batched_settlement_gas_around_the_verifier(
    settlement, batched_verifier, make_pool, make_product, make_policy, make_claim, relayer
):
    """Settlement gas per claim around a (mock) batch verification, against submitClaims."""
    product_id = make_product(make_pool(fund=100 * E18))
    policies = [make_policy(product_id) for _ in range(10)]
    looped = settlement.submitClaims(tuples(*(make_claim(p) for p in policies[:5])), sender=relayer)
    batched = settlement.submitClaimsBatched(
        tuples(*(make_claim(p) for p in policies[5:])), sender=relayer
    )
    per_loop, per_batch = (looped.gas_used - 21_000) / 5, (batched.gas_used - 21_000) / 5
    print(f"\nper claim: submitClaims {per_loop:.0f}, submitClaimsBatched {per_batch:.0f}")
    assert len(events(batched, settlement, "ClaimPaid")) == 5
    assert per_batch < per_loop


def test_batched_claims_on_a_proof_commitment_version(
    project,
    settlement,
    registry,
    chain,
    deployer,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    relayer,
):
    """Layout {1, PROOF_COMMITMENT, 0, 1}: each claim is bound to keccak256 of its own proof's
    first G1 point; attestations swapped between two claims fail the batch with the mismatch."""
    single = deployer.deploy(project.MockVerifier)
    layout = (1, PROOF_COMMITMENT, 0, 1, OUTPUT_SCALE)
    registry.registerModel(
        DIAG_MODEL, 2, single, code_hash(chain, single), ONNX_SHA, VK_SHA, layout, sender=deployer
    )
    mock = deployer.deploy(project.MockBatchVerifier)
    mock.setMode(BATCH_COMMITTED, 0, sender=deployer)
    registry.registerBatchVerifier(DIAG_MODEL, 2, mock, code_hash(chain, mock), sender=deployer)
    policy_id = make_policy(make_product(make_pool(), version=2))
    instances = [[encode_signed(ONE)], [encode_signed(-ONE)]]
    proofs = [committed_proof(5, 6, instances[0]), committed_proof(7, 8, instances[1])]
    proven = [point_commitment(p) for p in proofs]

    swapped = [
        make_claim(policy_id, commitment=proven[1 - i], instances=instances[i], proof=proofs[i])
        for i in range(2)
    ]
    with reverts(
        settlement.ClaimSettlementCommitmentMismatch, attested=proven[1], proven=proven[0]
    ):
        settlement.submitClaimsBatched(tuples(*swapped), sender=relayer)
    assert_untouched(settlement, *swapped)

    claims = [
        make_claim(policy_id, commitment=proven[i], instances=instances[i], proof=proofs[i])
        for i in range(2)
    ]
    receipt = settlement.submitClaimsBatched(tuples(*claims), sender=relayer)
    assert [(e.claimId, e.amount) for e in events(receipt, settlement, "ClaimPaid")] == [(1, E18)]
    assert [e.claimId for e in events(receipt, settlement, "ClaimDenied")] == [2]
    assert [settlement.claimOfCommitment(policy_id, c) for c in proven] == [1, 2]
