"""Settlement and bounties with **real EZKL proofs** and the generated verifiers.

Everything else in this folder uses MockVerifier for speed; here every feature runs once more
end to end: EZKL proof -> ModelRegistry -> ClaimSettlement / ResearchBounty -> payout.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from eth_utils import keccak

from prover.deploy import verifier_container
from prover.models.bounty_eval import (
    LABELS_INDEX,
    METRIC_INDEX,
    WEIGHTS_INDEX,
    benchmark_commitments,
    export_eval_onnx,
    prove_evaluation,
)
from prover.models.breast_cancer import DiagnosisProof, diagnostic_weights, prove_diagnosis
from prover.zk.fields import BN254_R

from .conftest import code_hash
from .eip712 import sign_attestation
from .helpers import AT_MOST, ETH, b32, events, reverts
from .test_bounty import Block

REAL_DIAG = keccak(text="zkcare/breast_cancer_lr")
REAL_EVAL = keccak(text="zkcare/bounty_eval")
OTHER_DIAG = keccak(text="zkcare/breast_cancer_lr-c0.05")
E18 = 10**18


class BigBlock(Block):
    """Same-block transactions with room for a real verifier call."""

    gas = 3_000_000


# --------------------------------------------------------------------------------- deployment


@pytest.fixture(scope="module")
def real(project, chain, deployer, guardian, diagnostic_bundle, eval_bundle, other_bundle):
    """Registry + settlement + bounty wired to the EZKL-generated verifiers."""
    diag_v = deployer.deploy(verifier_container(diagnostic_bundle))
    eval_v = deployer.deploy(verifier_container(eval_bundle))
    other_v = deployer.deploy(verifier_container(other_bundle))
    registry = deployer.deploy(project.ModelRegistry, deployer)
    registry.grantRole(registry.REGISTRAR_ROLE(), deployer, sender=deployer)
    registry.grantRole(registry.GUARDIAN_ROLE(), guardian, sender=deployer)
    for mid, verifier, bundle, layout in [
        (REAL_DIAG, diag_v, diagnostic_bundle, (2, 0, 1, 1, diagnostic_bundle.output_scale)),
        (OTHER_DIAG, other_v, other_bundle, (2, 0, 1, 1, other_bundle.output_scale)),
        (REAL_EVAL, eval_v, eval_bundle, (4, 0, METRIC_INDEX, 1, eval_bundle.output_scale)),
    ]:
        registry.registerModel(
            mid,
            1,
            verifier,
            code_hash(chain, verifier),
            bytes.fromhex(bundle.manifest["sha256"]["onnx"]),
            bytes.fromhex(bundle.manifest["sha256"]["vk"]),
            layout,
            sender=deployer,
        )
    settlement = deployer.deploy(project.ClaimSettlement, registry, deployer)
    bounty = deployer.deploy(project.ResearchBounty, registry, 1)
    return registry, settlement, bounty


@pytest.fixture(scope="module")
def malignant(diagnosis, dataset) -> DiagnosisProof:
    """The session's real proof: held-out patient 0, the first malignant one."""
    assert next(i for i, y in enumerate(dataset.y_test) if y == 0) == 0
    return diagnosis


@pytest.fixture(scope="module")
def benign(diagnostic_bundle, dataset, proof_dir) -> DiagnosisProof:
    index = next(i for i, y in enumerate(dataset.y_test) if y == 1)
    return prove_diagnosis(diagnostic_bundle, list(dataset.x_test[index]), proof_dir)


@pytest.fixture(scope="module")
def insurance(real, insurer, hospital, patient, chain):
    """An ETH pool paying 1 ETH when the model calls the tumour malignant (logit <= 0)."""
    _, settlement, _ = real
    pool_id = settlement.createPool(ETH, sender=insurer).decode_logs(settlement.PoolCreated)[0]
    pool_id = pool_id.poolId
    settlement.fundPool(pool_id, 20 * E18, value=20 * E18, sender=insurer)
    settlement.setHospitalTrust(pool_id, hospital.address, True, sender=insurer)

    def product(threshold: int = 0, model: bytes = REAL_DIAG) -> int:
        receipt = settlement.createProduct(
            pool_id, model, 1, (AT_MOST, 0, threshold), E18, sender=insurer
        )
        return receipt.decode_logs(settlement.ProductCreated)[0].productId

    def policy(product_id: int) -> int:
        expiry = chain.pending_timestamp + 30 * 86400
        receipt = settlement.issuePolicy(product_id, patient, 2 * E18, expiry, sender=insurer)
        return receipt.decode_logs(settlement.PolicyIssued)[0].policyId

    return settlement, pool_id, product, policy


def claim(
    settlement,
    chain,
    hospital,
    policy_id,
    diag: DiagnosisProof,
    *,
    record=None,
    chain_id=None,
    instances=None,
):
    """A claim tuple with the hospital's EIP-712 attestation over the proof's commitment."""
    record = record or b32(f"record-{diag.commitment}-{policy_id}")
    expiry = chain.pending_timestamp + 3600
    signature = sign_attestation(
        hospital.key,
        chain_id=chain_id or chain.chain_id,
        verifying_contract=settlement.address,
        policy_id=policy_id,
        input_commitment=diag.commitment,
        record_nullifier=record,
        expiry=expiry,
    )
    inst = list(diag.proof.instances) if instances is None else instances
    return (
        policy_id,
        hospital.address,
        expiry,
        record,
        diag.commitment,
        signature,
        diag.proof.proof,
        inst,
    )


# --------------------------------------------------------------------------------- insurance


def test_malignant_diagnosis_pays_the_holder(
    insurance, malignant, chain, hospital, patient, relayer
):
    settlement, _, product, policy = insurance
    policy_id = policy(product())
    before = patient.balance
    receipt = settlement.submitClaim(
        claim(settlement, chain, hospital, policy_id, malignant), sender=relayer
    )
    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.policyId, paid.amount) == (policy_id, E18)
    assert patient.balance - before == E18
    assert malignant.logit < 0


def test_benign_diagnosis_is_recorded_as_denied(
    insurance, benign, chain, hospital, relayer, diagnostic_bundle
):
    settlement, _, product, policy = insurance
    policy_id = policy(product())
    receipt = settlement.submitClaim(
        claim(settlement, chain, hospital, policy_id, benign), sender=relayer
    )
    [denied] = events(receipt, settlement, "ClaimDenied")
    assert denied.policyId == policy_id and denied.threshold == 0
    scale = diagnostic_bundle.output_scale
    assert denied.output == round(benign.logit * 2**scale) and denied.output > 0
    assert not events(receipt, settlement, "ClaimPaid")


def test_threshold_is_the_proven_output_plus_minus_one_unit(
    insurance, malignant, chain, hospital, relayer, diagnostic_bundle, dataset, proof_dir
):
    """AtMost threshold t pays iff output <= t: at t = output it pays, at output - 1 it denies."""
    settlement, _, product, policy = insurance
    output = malignant.proof.instances[1] - BN254_R  # negative logit, fixed-point
    fresh = [
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[0]), proof_dir, salt=s)
        for s in [(1, 2, 3, 4, 5, 6), (6, 5, 4, 3, 2, 1)]
    ]
    assert all(f.proof.instances[1] - BN254_R == output for f in fresh)
    at = settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product(output)), fresh[0]), sender=relayer
    )
    below = settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product(output - 1)), fresh[1]), sender=relayer
    )
    assert events(at, settlement, "ClaimPaid") and events(below, settlement, "ClaimDenied")


def test_the_same_proof_never_pays_twice(insurance, malignant, chain, hospital, relayer, real):
    settlement, _, product, policy = insurance
    settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product()), malignant), sender=relayer
    )
    first = settlement.claimOfCommitment(malignant.commitment)
    assert first != 0
    # Another policy, another product (and another record id): the commitment is spent.
    other = policy(product(threshold=5))
    with reverts(
        settlement.ClaimSettlementCommitmentAlreadyUsed,
        inputCommitment=malignant.commitment,
        claimId=first,
    ):
        settlement.submitClaim(claim(settlement, chain, hospital, other, malignant), sender=relayer)


def test_same_proof_at_a_second_pool(insurance, malignant, chain, hospital, relayer, insurer):
    settlement, _, product, policy = insurance
    settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product()), malignant), sender=relayer
    )
    pool2 = settlement.createPool(ETH, sender=insurer).decode_logs(settlement.PoolCreated)[0]
    settlement.fundPool(pool2.poolId, 2 * E18, value=2 * E18, sender=insurer)
    settlement.setHospitalTrust(pool2.poolId, hospital.address, True, sender=insurer)
    product2 = settlement.createProduct(
        pool2.poolId, REAL_DIAG, 1, (AT_MOST, 0, 0), E18, sender=insurer
    ).decode_logs(settlement.ProductCreated)[0]
    policy2 = settlement.issuePolicy(
        product2.productId, insurer, E18, chain.pending_timestamp + 86400, sender=insurer
    )
    policy2 = policy2.decode_logs(settlement.PolicyIssued)[0].policyId
    with reverts(
        settlement.ClaimSettlementCommitmentAlreadyUsed, inputCommitment=malignant.commitment
    ):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy2, malignant), sender=relayer
        )


def test_tampered_output_is_rejected_by_the_real_verifier(
    insurance, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer
):
    settlement, _, product, policy = insurance
    diag = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[5]), proof_dir)
    policy_id = policy(product())
    forged = list(diag.proof.instances)
    forged[1] = BN254_R - 100_000  # "very malignant"
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, diag, instances=forged), sender=relayer
        )
    aliased = list(diag.proof.instances)
    aliased[1] += BN254_R  # same residue, non-canonical encoding
    with reverts(settlement.ModelRegistryInstanceNotInField, index=1, value=aliased[1]):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, diag, instances=aliased), sender=relayer
        )
    flipped = bytearray(diag.proof.proof)
    flipped[77] ^= 1
    bad = dataclasses.replace(diag, proof=dataclasses.replace(diag.proof, proof=bytes(flipped)))
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(claim(settlement, chain, hospital, policy_id, bad), sender=relayer)


def test_proof_of_another_model_is_rejected(
    insurance, other_bundle, dataset, proof_dir, chain, hospital, relayer
):
    """A valid proof from another (registered) model cannot settle this model's product."""
    settlement, _, product, policy = insurance
    other = prove_diagnosis(other_bundle, list(dataset.x_test[0]), proof_dir)
    policy_id = policy(product())
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(claim(settlement, chain, hospital, policy_id, other), sender=relayer)
    # ...while it settles its own model's product.
    own = settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product(model=OTHER_DIAG)), other),
        sender=relayer,
    )
    assert events(own, settlement, "ClaimPaid")


def test_attestation_for_another_chain_is_rejected(
    insurance, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer
):
    settlement, _, product, policy = insurance
    diag = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[7]), proof_dir)
    policy_id = policy(product())
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, diag, chain_id=chain.chain_id + 1),
            sender=relayer,
        )


def test_batch_of_real_claims(
    insurance, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer
):
    settlement, _, product, policy = insurance
    product_id = product()
    diags = [
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[i]), proof_dir)
        for i in range(10, 14)
    ]
    claims = [claim(settlement, chain, hospital, policy(product_id), d) for d in diags]
    receipt = settlement.submitClaims(claims, sender=relayer)
    paid = len(events(receipt, settlement, "ClaimPaid"))
    denied = len(events(receipt, settlement, "ClaimDenied"))
    assert paid == sum(d.malignant for d in diags) and paid + denied == 4


def test_revoked_model_stops_real_claims(
    insurance, real, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer, guardian
):
    registry, settlement, _ = real
    _, _, product, policy = insurance
    diag = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[20]), proof_dir)
    policy_id = policy(product(model=OTHER_DIAG))
    registry.revokeModel(OTHER_DIAG, 1, sender=guardian)
    with reverts(settlement.ModelRegistryVersionRevoked, modelId=OTHER_DIAG, version=1):
        settlement.submitClaim(claim(settlement, chain, hospital, policy_id, diag), sender=relayer)


# --------------------------------------------------------------------------------- bounties


@pytest.fixture(scope="module")
def researcher_proof(eval_bundle, benchmark, researcher_onnx, proof_dir):
    return prove_evaluation(eval_bundle, benchmark, proof_dir, model=researcher_onnx)


@pytest.fixture(scope="module")
def make_real_bounty(real, deployer, chain, eval_bundle, benchmark):
    _, _, bounty = real
    bench, labels = benchmark_commitments(benchmark, eval_bundle.input_scale)

    def make(min_correct: int = 7) -> int:
        params = (
            ETH,
            E18,
            REAL_EVAL,
            1,
            bench,
            labels,
            WEIGHTS_INDEX,
            LABELS_INDEX,
            min_correct,
            chain.pending_timestamp + 86400,
        )
        receipt = bounty.createBounty(params, value=E18, sender=deployer)
        return receipt.decode_logs(bounty.BountyCreated)[0].bountyId

    return make


def _commit(bounty, bounty_id, who, weights, salt):
    bounty.commit(bounty.submissionCommitment(bounty_id, who, weights, salt), sender=who)


def test_private_model_meeting_the_metric_is_paid(
    real, make_real_bounty, researcher_proof, researcher, relayer, chain
):
    _, _, bounty = real
    assert researcher_proof.metric_raw >= 7  # 7/8 or better on the committed benchmark
    bounty_id = make_real_bounty()
    salt = b32("researcher-salt")
    _commit(bounty, bounty_id, researcher, researcher_proof.weights_commitment, salt)
    chain.mine()
    before = researcher.balance
    receipt = bounty.reveal(
        bounty_id,
        researcher,
        researcher_proof.weights_commitment,
        salt,
        researcher_proof.proof.proof,
        list(researcher_proof.proof.instances),
        sender=relayer,
    )
    [award] = events(receipt, bounty, "BountyAwarded")
    assert (award.researcher, award.weightsCommitment, award.metric) == (
        researcher.address,
        researcher_proof.weights_commitment,
        researcher_proof.metric_raw,
    )
    assert researcher.balance - before == E18


def test_model_below_the_metric_is_refused(
    real, make_real_bounty, eval_bundle, benchmark, researcher, proof_dir, chain
):
    _, _, bounty = real
    w, b = diagnostic_weights()
    worse = export_eval_onnx(-np.asarray(w), -b, benchmark.size, proof_dir / "inverted.onnx")
    result = prove_evaluation(eval_bundle, benchmark, proof_dir, model=worse)
    assert result.metric_raw < 7
    bounty_id = make_real_bounty()
    salt = b32("inverted")
    _commit(bounty, bounty_id, researcher, result.weights_commitment, salt)
    chain.mine()
    with reverts(
        bounty.ResearchBountyMetricBelowMinimum,
        bountyId=bounty_id,
        metric=result.metric_raw,
        minMetric=7,
    ):
        bounty.reveal(
            bounty_id,
            researcher,
            result.weights_commitment,
            salt,
            result.proof.proof,
            list(result.proof.instances),
            sender=researcher,
        )


def test_copied_real_proof_never_pays_the_copier(
    real, make_real_bounty, researcher_proof, researcher, copier, chain
):
    """Automine off: the copier races the researcher's reveal with a higher tip."""
    _, _, bounty = real
    bounty_id = make_real_bounty()
    salt = b32("honest")
    weights = researcher_proof.weights_commitment
    _commit(bounty, bounty_id, researcher, weights, salt)
    chain.mine()
    proof, inst = researcher_proof.proof.proof, list(researcher_proof.proof.instances)
    researcher_before, copier_before = researcher.balance, copier.balance
    with BigBlock(chain) as block:
        stolen = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(bounty_id, copier, weights, salt, proof, inst),
            tip_gwei=50,
        )
        replay = block.send(
            copier,
            bounty,
            bounty.reveal.encode_input(bounty_id, researcher, weights, salt, proof, inst),
            tip_gwei=40,
        )
        honest = block.send(
            researcher,
            bounty,
            bounty.reveal.encode_input(bounty_id, researcher, weights, salt, proof, inst),
            tip_gwei=1,
        )
    statuses = [block.receipts[i]["status"] for i in (stolen, replay, honest)]
    # The exact replay lands first and pays the rightful researcher; the rest revert.
    assert statuses == [0, 1, 0]
    assert bounty.getBounty(bounty_id).winner == researcher.address
    h = block.receipts[honest]
    assert researcher.balance - researcher_before == E18 - h["gasUsed"] * h["effectiveGasPrice"]
    assert copier.balance < copier_before  # paid gas, got nothing
