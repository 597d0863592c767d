"""submitClaimsBatched with **real EZKL proofs**: the generated single and batch verifiers.

A batch of real claims settles through one ``verifyBatch``, each paid or denied as its proven
output dictates; one bad proof fails the batch (with its index when it failed on its own), and
the relay's isolation (a smaller batch, or ``submitClaims``) settles the rest; replays fail.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from prover.deploy import batch_verifier_container, instance_layout, verifier_container
from prover.models.breast_cancer import DiagnosisProof, prove_diagnosis
from prover.models.card import ModelCard
from prover.zk.commitment import POINT_BYTES
from prover.zk.fields import BN254_R

from .conftest import code_hash, pool_of
from .eip712 import sign_attestation
from .helpers import AT_MOST, ETH, b32, events, reverts

REAL_DIAG = keccak(text="zkcare/breast_cancer_lr")
NO_INDEX = 2**256 - 1
E18 = 10**18


@pytest.fixture(scope="module")
def batched_real(project, chain, deployer, insurer, hospital, diagnostic_bundle):
    """Registry with the diagnostic model's real verifier and batch verifier, a settlement, and
    a funded ETH pool paying 1 ETH when the model calls the tumour malignant (logit <= 0)."""
    single = deployer.deploy(verifier_container(diagnostic_bundle))
    batch_container = batch_verifier_container(diagnostic_bundle)
    assert batch_container is not None, diagnostic_bundle.manifest["batch_verifier"]
    batch = deployer.deploy(batch_container)
    registry = deployer.deploy(project.ModelRegistry, deployer)
    registry.grantRole(registry.REGISTRAR_ROLE(), deployer, sender=deployer)
    registry.registerModel(
        REAL_DIAG,
        1,
        single,
        code_hash(chain, single),
        bytes.fromhex(diagnostic_bundle.manifest["sha256"]["onnx"]),
        bytes.fromhex(diagnostic_bundle.manifest["sha256"]["vk"]),
        instance_layout(diagnostic_bundle),
        sender=deployer,
    )
    registry.registerBatchVerifier(REAL_DIAG, 1, batch, code_hash(chain, batch), sender=deployer)
    settlement = deployer.deploy(project.ClaimSettlement, registry, deployer)
    pool_id = settlement.createPool(ETH, sender=insurer).decode_logs(settlement.PoolCreated)[0]
    pool_id = pool_id.poolId
    settlement.fundPool(pool_id, 30 * E18, value=30 * E18, sender=insurer)
    settlement.setHospitalTrust(pool_id, hospital.address, True, sender=insurer)
    product = settlement.createProduct(pool_id, REAL_DIAG, 1, (AT_MOST, 0, 0), E18, sender=insurer)
    return settlement, product.decode_logs(settlement.ProductCreated)[0].productId


@pytest.fixture(scope="module")
def batched_real_diagnoses(diagnostic_bundle, dataset, proof_dir) -> list[DiagnosisProof]:
    """Real proofs of held-out patients 0..4 (malignant and benign among them)."""
    proofs = [
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[i]), proof_dir) for i in range(5)
    ]
    assert {d.logit <= 0 for d in proofs} == {True, False}
    return proofs


def real_claim(settlement, chain, hospital, policy_id: int, diag: DiagnosisProof) -> list:
    """A claim (as a mutable list) with the hospital's attestation over the proof's commitment."""
    record = b32(f"record-{diag.commitment}-{policy_id}")
    attested_at = chain.pending_timestamp
    signature = sign_attestation(
        hospital.key,
        chain_id=chain.chain_id,
        verifying_contract=settlement.address,
        policy_id=policy_id,
        pool_id=pool_of(settlement, policy_id),
        hospital=hospital.address,
        input_commitment=diag.commitment,
        record_nullifier=record,
        attested_at=attested_at,
        expiry=attested_at + 3600,
    )
    return [
        policy_id,
        hospital.address,
        attested_at,
        attested_at + 3600,
        record,
        diag.commitment,
        signature,
        diag.proof.proof,
        list(diag.proof.instances),
    ]


@pytest.fixture(scope="module")
def batched_real_claims(batched_real, batched_real_diagnoses, insurer, patient, chain, hospital):
    """Make one claim per diagnosis, each on a fresh 2 ETH policy."""
    settlement, product_id = batched_real

    def make() -> list[list]:
        out = []
        for diag in batched_real_diagnoses:
            expiry = chain.pending_timestamp + 30 * 86400
            issued = settlement.issuePolicy(product_id, patient, 2 * E18, expiry, sender=insurer)
            policy_id = issued.decode_logs(settlement.PolicyIssued)[0].policyId
            out.append(real_claim(settlement, chain, hospital, policy_id, diag))
        return out

    return make


def test_real_batch_pays_or_denies_each_claim_by_its_proven_output(
    batched_real, batched_real_claims, batched_real_diagnoses, patient, relayer
):
    settlement, _ = batched_real
    claims = batched_real_claims()
    before = patient.balance
    receipt = settlement.submitClaimsBatched([tuple(c) for c in claims], sender=relayer)
    malignant = [d.logit <= 0 for d in batched_real_diagnoses]
    ids = range(1, len(claims) + 1)
    assert [e.claimId for e in events(receipt, settlement, "ClaimPaid")] == [
        i for i, m in zip(ids, malignant, strict=True) if m
    ]
    assert [e.claimId for e in events(receipt, settlement, "ClaimDenied")] == [
        i for i, m in zip(ids, malignant, strict=True) if not m
    ]
    assert patient.balance - before == sum(malignant) * E18
    for claim_id, c in zip(ids, claims, strict=True):
        assert settlement.claimOfCommitment(c[0], c[5]) == claim_id


def test_real_batch_with_a_bad_proof_fails_whole_then_the_rest_settle(
    batched_real, batched_real_claims, batched_real_diagnoses, relayer
):
    settlement, _ = batched_real
    claims = batched_real_claims()
    broken = bytearray(claims[1][7])
    # past the input commitment (the first point), an advice commitment leaves the curve:
    # proof 1 fails on its own
    broken[POINT_BYTES + 40] ^= 1
    claims[1][7] = bytes(broken)
    with reverts(settlement.ModelRegistryBatchRejected, modelId=REAL_DIAG, version=1, index=1):
        settlement.submitClaimsBatched([tuple(c) for c in claims], sender=relayer)
    assert settlement.claimCount() == 0
    # isolated by the named index: the others settle as a smaller batch
    rest = [tuple(c) for i, c in enumerate(claims) if i != 1]
    receipt = settlement.submitClaimsBatched(rest, sender=relayer)
    settled = events(receipt, settlement, "ClaimPaid") + events(receipt, settlement, "ClaimDenied")
    assert sorted(e.policyId for e in settled) == sorted(c[0] for c in rest)
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(tuple(claims[1]), sender=relayer)


def test_real_batch_with_a_lying_output_fails_whole_then_settles_singly(
    batched_real, batched_real_claims, relayer, diagnostic_bundle
):
    """A claimed output the proof does not prove fails only the pairing (no index)."""
    settlement, _ = batched_real
    claims = batched_real_claims()
    out = ModelCard.of(diagnostic_bundle).instance_layout.output_indexes[0]
    claims[3][8][out] = (claims[3][8][out] + 1) % BN254_R
    with reverts(
        settlement.ModelRegistryBatchRejected, modelId=REAL_DIAG, version=1, index=NO_INDEX
    ):
        settlement.submitClaimsBatched([tuple(c) for c in claims], sender=relayer)
    assert settlement.claimCount() == 0
    receipt = settlement.submitClaims([tuple(c) for c in claims], sender=relayer)
    [rejected] = events(receipt, settlement, "ClaimRejected")
    assert rejected.index == 3
    settled = events(receipt, settlement, "ClaimPaid") + events(receipt, settlement, "ClaimDenied")
    assert len(settled) == len(claims) - 1


def test_real_batch_replayed_settles_nothing_twice(batched_real, batched_real_claims, relayer):
    settlement, _ = batched_real
    claims = [tuple(c) for c in batched_real_claims()[:2]]
    settlement.submitClaimsBatched(claims, sender=relayer)
    first_record = claims[0][4]
    with reverts(
        settlement.ClaimSettlementRecordAlreadyClaimed,
        policyId=claims[0][0],
        recordNullifier=first_record,
        claimId=1,
    ):
        settlement.submitClaimsBatched(claims, sender=relayer)
    with reverts(settlement.ClaimSettlementRecordAlreadyClaimed, policyId=claims[1][0], claimId=2):
        settlement.submitClaim(claims[1], sender=relayer)
    assert settlement.claimCount() == 2
