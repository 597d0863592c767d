"""ClaimSettlement: paid/denied claims, payout rules, nullifiers, attestations, model status, reserves."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from .conftest import code_hash, pool_of
from .eip712 import attestation, attestation_digest, sign_attestation
from .helpers import (
    AT_LEAST,
    AT_MOST,
    COMMITTED,
    DIAG_MODEL,
    ETH,
    EVAL_MODEL,
    FIELD_MODULUS,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    PROOF_COMMITMENT,
    VK_SHA,
    b32,
    committed_proof,
    encode_signed,
    events,
    mock_proof,
    point_commitment,
    reverts,
)

E18 = 10**18


def test_claim_paid(settlement, eth_setup, make_claim, patient, relayer, hospital, chain, chain_id):
    pool_id, product_id, policy_id = eth_setup
    claim = make_claim(policy_id, output=ONE)
    # The Python EIP-712 digest is the contract's.
    fields = dict(
        policy_id=policy_id,
        pool_id=pool_id,
        hospital=hospital.address,
        input_commitment=claim.input_commitment,
        record_nullifier=claim.record_nullifier,
        attested_at=claim.attested_at,
        expiry=claim.attestation_expiry,
    )
    assert settlement.attestationDigest(attestation(**fields).as_tuple()) == attestation_digest(
        chain_id=chain_id, verifying_contract=settlement.address, **fields
    )
    before = patient.balance

    receipt = settlement.submitClaim(claim.as_tuple(), sender=relayer)  # anyone may relay

    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.claimId, paid.policyId, paid.holder, paid.amount) == (
        1,
        policy_id,
        patient.address,
        E18,
    )
    assert set(paid.event_arguments) == {"claimId", "policyId", "holder", "amount"}  # no output
    assert not events(receipt, settlement, "ClaimDenied")
    assert not events(receipt, settlement, "PayoutCredited")
    assert patient.balance - before == E18
    pool = settlement.getPool(pool_id)
    assert (pool.balance, pool.reserved) == (9 * E18, E18)  # 10 funded, 2 reserved, 1 paid
    policy = settlement.getPolicy(policy_id)
    assert (policy.reserved, policy.paid) == (E18, E18)
    assert settlement.claimOfCommitment(policy_id, claim.input_commitment) == 1
    assert settlement.claimOfCommitment(policy_id + 1, claim.input_commitment) == 0
    assert settlement.claimOfRecord(policy_id, claim.record_nullifier) == 1
    assert settlement.claimCount() == 1
    assert settlement.balance == 9 * E18


def test_claim_denied_consumes_nullifiers(settlement, eth_setup, make_claim, patient, relayer):
    _, _, policy_id = eth_setup
    claim = make_claim(policy_id, output=ONE // 2 - 1)
    before = patient.balance
    receipt = settlement.submitClaim(claim.as_tuple(), sender=relayer)
    [denied] = events(receipt, settlement, "ClaimDenied")
    assert (denied.claimId, denied.policyId) == (1, policy_id)
    assert set(denied.event_arguments) == {"claimId", "policyId"}  # no output, no threshold
    assert not events(receipt, settlement, "ClaimPaid")
    assert patient.balance == before
    assert settlement.getPolicy(policy_id).reserved == 2 * E18
    # The denied record/proof cannot be replayed.
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=policy_id,
        recordNullifier=claim.record_nullifier,
        claimId=1,
    ):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


@pytest.mark.parametrize(
    "comparison,threshold",
    [(AT_LEAST, ONE // 2), (AT_MOST, 0), (AT_MOST, -ONE), (AT_LEAST, -3 * ONE)],
    ids=["output>=0.5", "logit<=0", "logit<=-1", "output>=-3"],
)
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_threshold_boundaries(
    settlement,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    relayer,
    comparison,
    threshold,
    delta,
):
    """One fixed-point unit (2^-14) either side of the threshold; negative outputs encoded as r - |v|."""
    pool_id = make_pool()
    product_id = make_product(pool_id, threshold=threshold, comparison=comparison)
    policy_id = make_policy(product_id)
    output = threshold + delta
    claim = make_claim(policy_id, output=output)
    if output < 0:
        assert claim.instances[1] == FIELD_MODULUS - abs(output)
    receipt = settlement.submitClaim(claim.as_tuple(), sender=relayer)
    should_pay = output >= threshold if comparison == AT_LEAST else output <= threshold
    assert len(events(receipt, settlement, "ClaimPaid")) == int(should_pay)
    denied = events(receipt, settlement, "ClaimDenied")
    assert len(denied) == int(not should_pay)


def test_same_proof_twice(settlement, eth_setup, make_claim, relayer, patient):
    _, _, policy_id = eth_setup
    claim = make_claim(policy_id)
    settlement.submitClaim(claim.as_tuple(), sender=relayer)
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=policy_id,
        recordNullifier=claim.record_nullifier,
        claimId=1,
    ):
        settlement.submitClaim(claim.as_tuple(), sender=patient)
    # Same proof and commitment under a fresh attestation with another record nullifier.
    again = make_claim(policy_id, commitment=claim.input_commitment, record=b32("another record"))
    assert again.proof == claim.proof
    with reverts(
        settlement.ClaimSettlementCommitmentAlreadyUsed,
        policyId=policy_id,
        inputCommitment=claim.input_commitment,
        claimId=1,
    ):
        settlement.submitClaim(again.as_tuple(), sender=relayer)


def test_same_record_with_fresh_salt(settlement, eth_setup, make_claim, relayer):
    """A new salt gives a new commitment and proof, but the record nullifier still blocks the claim."""
    _, _, policy_id = eth_setup
    record = b32("patient-42/visit-7")
    settlement.submitClaim(make_claim(policy_id, record=record).as_tuple(), sender=relayer)
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=policy_id,
        recordNullifier=record,
        claimId=1,
    ):
        settlement.submitClaim(make_claim(policy_id, record=record).as_tuple(), sender=relayer)


@pytest.mark.parametrize("where", ["second-pool", "second-product-same-pool", "second-policy"])
def test_same_proof_elsewhere(
    settlement, eth_setup, make_pool, make_product, make_policy, make_claim, relayer, where
):
    pool_id, product_id, policy_id = eth_setup
    claim = make_claim(policy_id)
    settlement.submitClaim(claim.as_tuple(), sender=relayer)
    if where == "second-pool":
        other_policy = make_policy(make_product(make_pool()))
    elif where == "second-product-same-pool":
        other_policy = make_policy(make_product(pool_id, threshold=0))
    else:
        other_policy = make_policy(product_id)
    # Nullifiers are per policy: the hospital (trusted by both pools) attesting the same commitment
    # for another policy is that policy's claim (double cover the holder bought), and it settles.
    copy = make_claim(
        other_policy, commitment=claim.input_commitment, record=claim.record_nullifier
    )
    assert copy.proof == claim.proof and copy.instances == claim.instances
    receipt = settlement.submitClaim(copy.as_tuple(), sender=relayer)
    assert [e.claimId for e in events(receipt, settlement, "ClaimPaid")] == [2]
    assert settlement.claimOfCommitment(other_policy, claim.input_commitment) == 2
    assert settlement.claimOfCommitment(policy_id, claim.input_commitment) == 1


def test_same_record_on_another_policy_with_new_proof_is_allowed(
    settlement, eth_setup, make_pool, make_product, make_policy, make_claim, relayer
):
    """Record nullifiers are per policy: one record may back claims on two different policies."""
    _, _, policy_id = eth_setup
    record = b32("shared record")
    settlement.submitClaim(make_claim(policy_id, record=record).as_tuple(), sender=relayer)
    other_policy = make_policy(make_product(make_pool()))
    receipt = settlement.submitClaim(
        make_claim(other_policy, record=record).as_tuple(), sender=relayer
    )
    assert events(receipt, settlement, "ClaimPaid")[0].policyId == other_policy


# ------------------------------------------------------------------------------------------ attestations


@pytest.mark.parametrize(
    "forgery",
    [
        "other-chain-id",
        "other-contract",
        "other-name",
        "other-version",
        "wrong-signer",
        "other-policy",
        "other-pool",
        "other-hospital",
        "tampered-record",
        "tampered-attested-at",
        "tampered-expiry",
        "garbage-signature",
        "empty-signature",
    ],
)
def test_invalid_attestation(
    settlement,
    eth_setup,
    make_claim,
    relayer,
    hospital,
    other_hospital,
    stranger,
    chain_id,
    forgery,
):
    _, _, policy_id = eth_setup
    kwargs = {}
    if forgery == "other-chain-id":
        kwargs["sign_chain_id"] = 1  # mainnet domain, replayed here
    elif forgery == "other-contract":
        kwargs["sign_contract"] = stranger.address
    elif forgery == "wrong-signer":
        kwargs.update(signer=other_hospital, hospital_address=hospital.address)
    elif forgery == "other-policy":
        kwargs["sign_policy_id"] = policy_id + 1
    elif forgery == "other-pool":
        kwargs["sign_pool_id"] = pool_of(settlement, policy_id) + 1
    elif forgery == "other-hospital":
        kwargs["sign_hospital"] = other_hospital.address  # the key's own, not the claimed one
    claim = make_claim(policy_id, **kwargs)
    if forgery in ("other-name", "other-version"):
        claim.signature = sign_attestation(
            hospital.key,
            chain_id=chain_id,
            verifying_contract=settlement.address,
            policy_id=policy_id,
            pool_id=pool_of(settlement, policy_id),
            hospital=hospital.address,
            input_commitment=claim.input_commitment,
            record_nullifier=claim.record_nullifier,
            attested_at=claim.attested_at,
            expiry=claim.attestation_expiry,
            **({"name": "zkcare"} if forgery == "other-name" else {"version": "2"}),
        )
    elif forgery == "tampered-record":
        claim.record_nullifier = b32("someone else's record")
    elif forgery == "tampered-attested-at":
        claim.attested_at -= 1
    elif forgery == "tampered-expiry":
        claim.attestation_expiry += 1
    elif forgery == "garbage-signature":
        claim.signature = b"\x01" * 65
    elif forgery == "empty-signature":
        claim.signature = b""
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


def test_untrusted_hospital(
    settlement, eth_setup, make_claim, relayer, other_hospital, insurer, hospital, chain
):
    pool_id, _, policy_id = eth_setup
    claim = make_claim(policy_id, signer=other_hospital)
    with reverts(
        settlement.ClaimSettlementUntrustedHospital, poolId=pool_id, hospital=other_hospital.address
    ):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)
    # Distrusting a hospital takes effect at once for attestations made from then on.
    receipt = settlement.setHospitalTrust(pool_id, hospital.address, False, sender=insurer)
    ev = events(receipt, settlement, "HospitalTrustUpdated")[0]
    assert (ev.poolId, ev.hospital, ev.trusted) == (pool_id, hospital.address, False)
    assert not settlement.isHospitalTrusted(pool_id, hospital.address)
    distrusted_at = settlement.getHospitalTrust(pool_id, hospital.address).distrustedAt
    assert distrusted_at == chain.blocks.head.timestamp
    with reverts(
        settlement.ClaimSettlementUntrustedHospital, poolId=pool_id, hospital=hospital.address
    ):
        settlement.submitClaim(
            make_claim(policy_id, attested_at=distrusted_at).as_tuple(), sender=relayer
        )


def test_attestation_expiry(settlement, eth_setup, make_claim, relayer, chain):
    _, _, policy_id = eth_setup
    expiry = chain.pending_timestamp + 100
    late = make_claim(policy_id, expiry=expiry)
    on_time = make_claim(policy_id, expiry=expiry)
    chain.pending_timestamp = expiry  # valid through its expiry second, inclusive
    settlement.submitClaim(on_time.as_tuple(), sender=relayer)
    chain.pending_timestamp = expiry + 1
    with reverts(settlement.ClaimSettlementAttestationExpired, expiry=expiry):
        settlement.submitClaim(late.as_tuple(), sender=relayer, gas=2_000_000)


def test_attested_commitment_must_match_proof(settlement, eth_setup, make_claim, relayer):
    _, _, policy_id = eth_setup
    proven = 777
    instances = [proven, encode_signed(ONE)]
    claim = make_claim(policy_id, commitment=555, instances=instances)  # attests 555, proves 777
    with reverts(settlement.ClaimSettlementCommitmentMismatch, attested=555, proven=proven):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


def test_erc1271_hospital(
    project,
    settlement,
    eth_setup,
    make_claim,
    relayer,
    insurer,
    hospital,
    other_hospital,
    patient,
    deployer,
):
    pool_id, _, policy_id = eth_setup
    wallet = deployer.deploy(project.MockERC1271Wallet, hospital.address)
    settlement.setHospitalTrust(pool_id, wallet.address, True, sender=insurer)
    bad = make_claim(policy_id, signer=other_hospital, hospital_address=wallet.address)
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=wallet.address):
        settlement.submitClaim(bad.as_tuple(), sender=relayer)
    good = make_claim(policy_id, signer=hospital, hospital_address=wallet.address)
    receipt = settlement.submitClaim(good.as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].holder == patient.address


# ------------------------------------------------------------------------------------------ proof / model


def test_instance_not_in_field(settlement, eth_setup, make_claim, relayer):
    _, _, policy_id = eth_setup
    commitment = 4242
    instances = [commitment, FIELD_MODULUS]  # "0" written non-canonically
    claim = make_claim(
        policy_id, commitment=commitment, instances=instances, proof=mock_proof(instances)
    )
    with reverts(settlement.ModelRegistryInstanceNotInField, index=1, value=FIELD_MODULUS):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)
    # A commitment >= r is rejected the same way.
    big = FIELD_MODULUS + 5
    instances = [big, encode_signed(ONE)]
    claim = make_claim(policy_id, commitment=big, instances=instances)
    with reverts(settlement.ModelRegistryInstanceNotInField, index=0, value=big):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


def test_forged_proof(settlement, eth_setup, make_claim, relayer):
    _, _, policy_id = eth_setup
    claim = make_claim(policy_id, output=-ONE)
    # Claim a high output with the proof of a low one.
    forged = make_claim(
        policy_id,
        commitment=claim.input_commitment,
        instances=[claim.input_commitment, encode_signed(ONE)],
        proof=claim.proof,
    )
    with reverts(settlement.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=1):
        settlement.submitClaim(forged.as_tuple(), sender=relayer)


def test_wrong_instance_layout(settlement, eth_setup, make_claim, relayer):
    _, _, policy_id = eth_setup
    instances = [
        9,
        8,
        encode_signed(ONE),
    ]  # an evaluation-circuit proof against the diagnostic model
    claim = make_claim(policy_id, commitment=9, instances=instances)
    with reverts(settlement.ModelRegistryInstanceCountMismatch, expected=2, actual=3):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


def test_revoked_model(settlement, registry, eth_setup, make_claim, relayer, guardian):
    _, _, policy_id = eth_setup
    registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    with reverts(settlement.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
        settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)


def test_product_needs_active_model(settlement, registry, make_pool, insurer, guardian):
    pool_id = make_pool()
    with reverts(settlement.ClaimSettlementModelNotActive, modelId=DIAG_MODEL, version=2):
        settlement.createProduct(pool_id, DIAG_MODEL, 2, (AT_LEAST, 0, 0), E18, sender=insurer)
    registry.revokeModel(EVAL_MODEL, 1, sender=guardian)
    with reverts(settlement.ClaimSettlementModelNotActive, modelId=EVAL_MODEL, version=1):
        settlement.createProduct(pool_id, EVAL_MODEL, 1, (AT_LEAST, 0, 0), E18, sender=insurer)
    with reverts(settlement.ClaimSettlementInvalidProduct, payout=0):
        settlement.createProduct(pool_id, DIAG_MODEL, 1, (AT_LEAST, 0, 0), 0, sender=insurer)


# ------------------------------------------------------------------------------------------ policies and reserves


def test_pool_product_policy_events(settlement, insurer, patient, hospital, chain):
    receipt = settlement.createPool(ETH, sender=insurer)
    created = events(receipt, settlement, "PoolCreated")[0]
    assert (created.insurer, created.asset) == (insurer.address, ETH)
    pool_id = created.poolId
    receipt = settlement.fundPool(pool_id, 3 * E18, value=3 * E18, sender=insurer)
    funded = events(receipt, settlement, "PoolFunded")[0]
    assert (funded.poolId, funded.funder, funded.amount) == (pool_id, insurer.address, 3 * E18)
    receipt = settlement.createProduct(
        pool_id, DIAG_MODEL, 1, (AT_MOST, 0, -ONE), E18, sender=insurer
    )
    product = events(receipt, settlement, "ProductCreated")[0]
    assert (
        product.poolId,
        product.modelId,
        product.version,
        product.comparison,
        product.output,
        product.threshold,
        product.payout,
    ) == (pool_id, DIAG_MODEL, 1, AT_MOST, 0, -ONE, E18)
    expiry = chain.pending_timestamp + 1000
    receipt = settlement.issuePolicy(product.productId, patient, 2 * E18, expiry, sender=insurer)
    issued = events(receipt, settlement, "PolicyIssued")[0]
    assert (issued.productId, issued.holder, issued.coverage, issued.expiry) == (
        product.productId,
        patient.address,
        2 * E18,
        expiry,
    )
    assert settlement.getPool(pool_id).reserved == 2 * E18


def test_underfunded_pool(
    settlement, make_pool, make_product, make_policy, insurer, patient, chain
):
    pool_id = make_pool(fund=E18)
    product_id = make_product(pool_id)
    expiry = chain.pending_timestamp + 1000
    with reverts(
        settlement.ClaimSettlementInsufficientFunds,
        poolId=pool_id,
        requested=2 * E18,
        available=E18,
    ):
        settlement.issuePolicy(product_id, patient, 2 * E18, expiry, sender=insurer)
    make_policy(product_id, coverage=E18 * 3 // 4)
    # Only the unreserved quarter is left - for policies and for withdrawals.
    with reverts(
        settlement.ClaimSettlementInsufficientFunds,
        poolId=pool_id,
        requested=E18 // 2,
        available=E18 // 4,
    ):
        settlement.issuePolicy(product_id, patient, E18 // 2, expiry, sender=insurer)
    with reverts(
        settlement.ClaimSettlementInsufficientFunds,
        poolId=pool_id,
        requested=E18 // 2,
        available=E18 // 4,
    ):
        settlement.withdrawFromPool(pool_id, E18 // 2, insurer, sender=insurer)
    receipt = settlement.withdrawFromPool(pool_id, E18 // 4, insurer, sender=insurer)
    ev = events(receipt, settlement, "PoolWithdrawn")[0]
    assert (ev.poolId, ev.to, ev.amount) == (pool_id, insurer.address, E18 // 4)
    pool = settlement.getPool(pool_id)
    assert pool.balance == pool.reserved == E18 * 3 // 4


def test_coverage_limit(
    settlement, make_pool, make_product, make_policy, make_claim, relayer, patient
):
    pool_id = make_pool()
    policy_id = make_policy(make_product(pool_id, payout=E18), coverage=E18 * 3 // 2)
    amounts = []
    for _ in range(2):
        receipt = settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
        amounts.append(events(receipt, settlement, "ClaimPaid")[0].amount)
    assert amounts == [E18, E18 // 2]  # the second claim is capped by the remaining coverage
    with reverts(settlement.ClaimSettlementCoverageExhausted, policyId=policy_id):
        settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert settlement.getPolicy(policy_id).paid == E18 * 3 // 2


def test_policy_expiry_grace_and_release(
    settlement, make_pool, make_product, make_policy, make_claim, relayer, stranger, insurer, chain
):
    """A claim attested while the policy was live may land within the grace; release waits it out."""
    pool_id = make_pool()
    policy_id = make_policy(make_product(pool_id), coverage=3 * E18)
    expiry = settlement.getPolicy(policy_id).expiry
    grace = settlement.CLAIM_GRACE_PERIOD()
    assert grace == 3 * 86400
    with reverts(settlement.ClaimSettlementPolicyNotExpired, policyId=policy_id, expiry=expiry):
        settlement.releasePolicy(policy_id, sender=stranger)
    chain.pending_timestamp = expiry  # the last second of cover
    settlement.submitClaim(make_claim(policy_id, expiry=expiry + 10).as_tuple(), sender=relayer)
    in_grace = make_claim(policy_id, attested_at=expiry, expiry=expiry + grace)
    late = make_claim(policy_id, attested_at=expiry + 1, expiry=expiry + grace)
    chain.pending_timestamp = expiry + 1
    with reverts(
        settlement.ClaimSettlementAttestedAfterExpiry,
        policyId=policy_id,
        expiry=expiry,
        attestedAt=expiry + 1,
    ):
        settlement.submitClaim(late.as_tuple(), sender=relayer, gas=2_000_000)
    chain.pending_timestamp = expiry + grace  # the grace's last second
    with reverts(settlement.ClaimSettlementPolicyNotExpired, policyId=policy_id, expiry=expiry):
        settlement.releasePolicy(policy_id, sender=stranger, gas=2_000_000)
    chain.pending_timestamp = expiry + grace
    receipt = settlement.submitClaim(in_grace.as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].amount == E18
    chain.pending_timestamp = expiry + grace + 1
    too_late = make_claim(policy_id, attested_at=expiry, expiry=expiry + grace)
    with reverts(settlement.ClaimSettlementPolicyExpired, policyId=policy_id, expiry=expiry):
        settlement.submitClaim(too_late.as_tuple(), sender=relayer, gas=2_000_000)
    receipt = settlement.releasePolicy(policy_id, sender=stranger)
    assert events(receipt, settlement, "PolicyReleased")[0].amount == E18
    assert settlement.getPool(pool_id).reserved == 0
    with reverts(settlement.ClaimSettlementCoverageExhausted, policyId=policy_id):
        settlement.releasePolicy(policy_id, sender=stranger)
    settlement.withdrawFromPool(pool_id, 8 * E18, insurer, sender=insurer)
    assert settlement.getPool(pool_id).balance == 0


def test_attestation_lifetime_is_bounded(
    settlement, eth_setup, make_claim, relayer, hospital, chain_id
):
    """expiry may be at most MAX_ATTESTATION_TTL after attestedAt (what bounds a backdated one)."""
    pool_id, _, policy_id = eth_setup
    ttl = settlement.MAX_ATTESTATION_TTL()
    claim = make_claim(policy_id)
    at = claim.attested_at
    claim.attestation_expiry = at + ttl + 1
    claim.signature = sign_attestation(
        hospital.key,
        chain_id=chain_id,
        verifying_contract=settlement.address,
        policy_id=policy_id,
        pool_id=pool_id,
        hospital=hospital.address,
        input_commitment=claim.input_commitment,
        record_nullifier=claim.record_nullifier,
        attested_at=at,
        expiry=at + 1,
        message={"expiry": at + ttl + 1},  # what Attestation itself refuses
    )
    with reverts(settlement.ClaimSettlementAttestationTooLong, attestedAt=at, expiry=at + ttl + 1):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)
    ok = make_claim(policy_id, expiry=at + ttl)
    assert events(settlement.submitClaim(ok.as_tuple(), sender=relayer), settlement, "ClaimPaid")


def test_unknown_ids(settlement, make_claim, relayer, insurer, patient, chain):
    with reverts(settlement.ClaimSettlementUnknownPolicy, policyId=99):
        settlement.submitClaim(make_claim(99).as_tuple(), sender=relayer)
    with reverts(settlement.ClaimSettlementUnknownProduct, productId=99):
        settlement.issuePolicy(99, patient, 1, chain.pending_timestamp + 10, sender=insurer)
    with reverts(settlement.ClaimSettlementUnknownPool, poolId=99):
        settlement.fundPool(99, 1, value=1, sender=insurer)
    with reverts(settlement.ClaimSettlementUnknownPolicy, policyId=99):
        settlement.releasePolicy(99, sender=insurer)


def test_invalid_policy_params(settlement, eth_setup, insurer, patient, chain):
    _, product_id, _ = eth_setup
    now = chain.pending_timestamp
    zero = "0x0000000000000000000000000000000000000000"
    for holder, coverage, expiry in [
        (zero, E18, now + 10),
        (patient.address, 0, now + 10),
        (patient.address, E18, now - 1),
    ]:
        with reverts(
            settlement.ClaimSettlementInvalidPolicy, holder=holder, coverage=coverage, expiry=expiry
        ):
            settlement.issuePolicy(product_id, holder, coverage, expiry, sender=insurer)


def test_only_the_insurer_manages_its_pool(settlement, eth_setup, stranger, patient, chain):
    pool_id, product_id, _ = eth_setup
    expect = dict(poolId=pool_id, account=stranger.address)
    with reverts(settlement.ClaimSettlementNotInsurer, **expect):
        settlement.setHospitalTrust(pool_id, stranger, True, sender=stranger)
    with reverts(settlement.ClaimSettlementNotInsurer, **expect):
        settlement.createProduct(pool_id, DIAG_MODEL, 1, (AT_LEAST, 0, 0), E18, sender=stranger)
    with reverts(settlement.ClaimSettlementNotInsurer, **expect):
        settlement.issuePolicy(
            product_id, patient, E18, chain.pending_timestamp + 100, sender=stranger
        )
    with reverts(settlement.ClaimSettlementNotInsurer, **expect):
        settlement.withdrawFromPool(pool_id, 1, stranger, sender=stranger)
    with reverts(settlement.ClaimSettlementNotInsurer, **expect):
        settlement.retireProduct(product_id, sender=stranger)


def test_retired_product(settlement, eth_setup, make_claim, insurer, patient, relayer, chain):
    _, product_id, policy_id = eth_setup
    receipt = settlement.retireProduct(product_id, sender=insurer)
    assert events(receipt, settlement, "ProductRetired")[0].productId == product_id
    with reverts(settlement.ClaimSettlementProductRetired, productId=product_id):
        settlement.issuePolicy(
            product_id, patient, E18, chain.pending_timestamp + 100, sender=insurer
        )
    with reverts(settlement.ClaimSettlementProductRetired, productId=product_id):
        settlement.retireProduct(product_id, sender=insurer)
    # Issued policies stay claimable.
    receipt = settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")


def test_pause(
    settlement, eth_setup, make_claim, deployer, stranger, relayer, insurer, patient, chain
):
    pool_id, product_id, policy_id = eth_setup
    with reverts(
        settlement.AccessControlUnauthorizedAccount,
        account=stranger.address,
        neededRole=settlement.PAUSER_ROLE(),
    ):
        settlement.pause(sender=stranger)
    settlement.pause(sender=deployer)
    claim = make_claim(policy_id)
    with reverts(settlement.EnforcedPause):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)
    with reverts(settlement.EnforcedPause):
        settlement.submitClaims([claim.as_tuple()], sender=relayer)
    with reverts(settlement.EnforcedPause):
        settlement.issuePolicy(
            product_id, patient, E18, chain.pending_timestamp + 100, sender=insurer
        )
    # Nothing a held-up claim relies on can leave while paused: no withdrawal, no release.
    with reverts(settlement.EnforcedPause):
        settlement.withdrawFromPool(pool_id, E18, insurer, sender=insurer)
    settlement.unpause(sender=deployer)
    assert events(settlement.submitClaim(claim.as_tuple(), sender=relayer), settlement, "ClaimPaid")
    settlement.withdrawFromPool(pool_id, E18, insurer, sender=insurer)


def test_a_pause_does_not_let_an_expired_policy_be_released(
    settlement, make_pool, make_product, make_policy, make_claim, deployer, stranger, chain
):
    """The audit's case: paused past a policy's expiry, the reservation must stay for the claim."""
    product_id = make_product(make_pool())
    policy_id = make_policy(product_id, expiry=chain.pending_timestamp + 100)
    settlement.pause(sender=deployer)
    chain.mine(deltatime=200 + settlement.CLAIM_GRACE_PERIOD())
    with reverts(settlement.EnforcedPause):
        settlement.releasePolicy(policy_id, sender=stranger)
    settlement.unpause(sender=deployer)
    settlement.releasePolicy(policy_id, sender=stranger)
    assert settlement.getPolicy(policy_id).reserved == 0


def test_fund_value_checks(settlement, make_pool, insurer, usdc):
    eth_pool = make_pool(fund=0)
    with reverts(settlement.PayoutsValueMismatch, expected=E18, actual=E18 - 1):
        settlement.fundPool(eth_pool, E18, value=E18 - 1, sender=insurer)
    with reverts(settlement.PayoutsInvalidAmount, amount=0):
        settlement.fundPool(eth_pool, 0, value=0, sender=insurer)
    token_pool = make_pool(usdc, fund=0)
    with reverts(settlement.PayoutsValueMismatch, expected=0, actual=1):
        settlement.fundPool(token_pool, 10, value=1, sender=insurer)


def test_batch_hook_is_self_only(settlement, eth_setup, make_claim, stranger):
    _, _, policy_id = eth_setup
    with reverts(settlement.ClaimSettlementOnlySelf):
        settlement.settleFromBatch(make_claim(policy_id).as_tuple(), sender=stranger)


def test_claim_on_a_proof_commitment_version(
    project,
    settlement,
    registry,
    chain,
    deployer,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    patient,
    relayer,
):
    """A `polycommit` version (input commitment = keccak256 of the proof's first G1 point): the
    claim pays when the hospital attested that hash, and is refused when it attested anything
    else (the output instance, or a hash of the whole proof)."""
    mock = deployer.deploy(project.MockVerifier)
    mock.setMode(COMMITTED, sender=deployer)
    layout = (1, PROOF_COMMITMENT, 0, 1, OUTPUT_SCALE)
    registry.registerModel(
        DIAG_MODEL, 2, mock, code_hash(chain, mock), ONNX_SHA, VK_SHA, layout, sender=deployer
    )
    policy_id = make_policy(make_product(make_pool(), version=2))
    instances = [encode_signed(ONE)]
    proof = committed_proof(0xC0FFEE, 0xBEEF, instances)
    proven = point_commitment(proof)

    for attested in (instances[0], int.from_bytes(keccak(proof), "big") >> 8):
        wrong = make_claim(policy_id, commitment=attested, instances=instances, proof=proof)
        with reverts(
            settlement.ClaimSettlementCommitmentMismatch, attested=attested, proven=proven
        ):
            settlement.submitClaim(wrong.as_tuple(), sender=relayer)
    short = make_claim(policy_id, commitment=proven, instances=instances, proof=proof[:63])
    with reverts(settlement.ModelRegistryInputCommitmentNotCanonical, proofIndex=0):
        settlement.submitClaim(short.as_tuple(), sender=relayer)

    claim = make_claim(policy_id, commitment=proven, instances=instances, proof=proof)
    before = patient.balance
    receipt = settlement.submitClaim(claim.as_tuple(), sender=relayer)
    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.claimId, paid.policyId, paid.holder, paid.amount) == (
        1,
        policy_id,
        patient.address,
        E18,
    )
    assert patient.balance - before == E18
    assert settlement.claimOfCommitment(policy_id, proven) == 1
