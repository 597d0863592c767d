"""Settlement and bounties with **real EZKL proofs** and the generated verifiers.

Everything else in this folder uses MockVerifier for speed; here every feature runs once more
end to end: EZKL proof -> ModelRegistry -> ClaimSettlement / ResearchBounty -> payout.
"""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_utils import keccak

from prover.deploy import instance_layout, verifier_container
from prover.models.bounty_eval import (
    Weights,
    context_scale,
    eval_layout,
    prove_evaluation,
    submission_context,
    weights_of,
)
from prover.models.breast_cancer import DiagnosisProof, prove_diagnosis
from prover.models.card import ModelCard
from prover.zk.commitment import POINT_BYTES, proof_commitment
from prover.zk.fields import BN254_R

from .conftest import code_hash, pool_of
from .eip712 import sign_attestation
from .helpers import AT_MOST, ETH, b32, events, reverts
from .test_bounty import Block

REAL_DIAG = keccak(text="zkcare/breast_cancer_lr")
REAL_EVAL = keccak(text="zkcare/bounty_eval")
OTHER_DIAG = keccak(text="zkcare/breast_cancer_lr-c0.05")
E18 = 10**18


def _output_index(bundle) -> int:
    """Where the model's (first) output sits among its proof's instances, from its card."""
    return ModelCard.of(bundle).instance_layout.output_indexes[0]


def _salt_limbs(bundle) -> int:
    return ModelCard.of(bundle).salt_limbs


def _with_proof(diag: DiagnosisProof, proof: bytes) -> DiagnosisProof:
    return dataclasses.replace(diag, proof=dataclasses.replace(diag.proof, proof=proof))


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
        (REAL_DIAG, diag_v, diagnostic_bundle, instance_layout(diagnostic_bundle)),
        (OTHER_DIAG, other_v, other_bundle, instance_layout(other_bundle)),
        (REAL_EVAL, eval_v, eval_bundle, eval_layout(eval_bundle)),
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
    attested_at = chain.pending_timestamp
    expiry = attested_at + 3600
    signature = sign_attestation(
        hospital.key,
        chain_id=chain_id or chain.chain_id,
        verifying_contract=settlement.address,
        policy_id=policy_id,
        pool_id=pool_of(settlement, policy_id),
        hospital=hospital.address,
        input_commitment=diag.commitment,
        record_nullifier=record,
        attested_at=attested_at,
        expiry=expiry,
    )
    inst = list(diag.proof.instances) if instances is None else instances
    return (
        policy_id,
        hospital.address,
        attested_at,
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
    assert denied.policyId == policy_id and benign.logit > 0
    assert set(denied.event_arguments) == {"claimId", "policyId"}  # the logit stays off the log
    assert not events(receipt, settlement, "ClaimPaid")


def test_threshold_is_the_proven_output_plus_minus_one_unit(
    insurance, malignant, chain, hospital, relayer, diagnostic_bundle, dataset, proof_dir
):
    """AtMost threshold t pays iff output <= t: at t = output it pays, at output - 1 it denies."""
    settlement, _, product, policy = insurance
    out = _output_index(diagnostic_bundle)
    output = malignant.proof.instances[out] - BN254_R  # negative logit, fixed-point
    limbs = _salt_limbs(diagnostic_bundle)
    fresh = [
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[0]), proof_dir, salt=s)
        for s in [tuple(range(1, limbs + 1)), tuple(range(limbs, 0, -1))]
    ]
    assert fresh[0].commitment != fresh[1].commitment != malignant.commitment
    assert all(f.proof.instances[out] - BN254_R == output for f in fresh)
    at = settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product(output)), fresh[0]), sender=relayer
    )
    below = settlement.submitClaim(
        claim(settlement, chain, hospital, policy(product(output - 1)), fresh[1]), sender=relayer
    )
    assert events(at, settlement, "ClaimPaid") and events(below, settlement, "ClaimDenied")


def test_the_same_proof_never_pays_twice_on_a_policy(
    insurance, malignant, chain, hospital, relayer
):
    settlement, _, product, policy = insurance
    policy_id = policy(product())
    settlement.submitClaim(claim(settlement, chain, hospital, policy_id, malignant), sender=relayer)
    first = settlement.claimOfCommitment(policy_id, malignant.commitment)
    assert first != 0
    # Re-attested under another record id: the commitment is spent on this policy.
    again = claim(settlement, chain, hospital, policy_id, malignant, record=b32("another record"))
    with reverts(
        settlement.ClaimSettlementCommitmentAlreadyUsed,
        policyId=policy_id,
        inputCommitment=malignant.commitment,
        claimId=first,
    ):
        settlement.submitClaim(again, sender=relayer)


def _attacker_policy(settlement, owner, hospital_address, chain) -> int:
    """``owner``'s own 1-wei pool trusting ``hospital_address``, with a 1-wei policy on REAL_DIAG."""
    pool = settlement.createPool(ETH, sender=owner).decode_logs(settlement.PoolCreated)[0].poolId
    settlement.fundPool(pool, 1, value=1, sender=owner)
    settlement.setHospitalTrust(pool, hospital_address, True, sender=owner)
    product = settlement.createProduct(pool, REAL_DIAG, 1, (AT_MOST, 0, 0), 1, sender=owner)
    product_id = product.decode_logs(settlement.ProductCreated)[0].productId
    issued = settlement.issuePolicy(
        product_id, owner, 1, chain.pending_timestamp + 86400, sender=owner
    )
    return issued.decode_logs(settlement.PolicyIssued)[0].policyId


def test_real_proof_replayed_elsewhere_does_not_block_the_victim(
    project,
    real,
    insurance,
    malignant,
    chain,
    hospital,
    relayer,
    copier,
    patient,
    deployer,
):
    """The audit's front-run with a real EZKL proof: the victim's public proof, replayed first on
    the attacker's pool/policy (its own hospital key), on a second ClaimSettlement and under another
    chain id's domain, leaves the victim's claim intact: it settles and pays the victim."""
    registry, settlement, _ = real
    _, _, product, policy = insurance
    victim_policy = policy(product())
    diag = malignant  # public once settled anywhere; per-policy nullifiers let it be reused
    rightful = claim(settlement, chain, hospital, victim_policy, diag)

    # 1. The attacker's pool and policy; its own hospital key attests the victim's commitment.
    key = Account.from_key(keccak(text="attacker hospital"))
    attacker_policy = _attacker_policy(settlement, copier, key.address, chain)
    stolen = claim(settlement, chain, key, attacker_policy, diag)
    assert stolen[-2:] == rightful[-2:]  # the very same proof and instances
    receipt = settlement.submitClaim(stolen, sender=copier)
    assert events(receipt, settlement, "ClaimPaid")[0].policyId == attacker_policy
    assert settlement.claimOfCommitment(attacker_policy, diag.commitment) != 0
    assert settlement.claimOfCommitment(victim_policy, diag.commitment) == 0

    # 2. A second ClaimSettlement on the same registry, trusting the same hospital.
    twin = deployer.deploy(project.ClaimSettlement, registry, deployer)
    twin_policy = _attacker_policy(twin, copier, hospital.address, chain)
    with reverts(twin.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        twin.submitClaim(rightful, sender=copier)  # the victim's signature is for `settlement`
    replayed = twin.submitClaim(claim(twin, chain, hospital, twin_policy, diag), sender=copier)
    assert events(replayed, twin, "ClaimPaid")[0].policyId == twin_policy

    # 3. The victim's attestation made under another chain id's domain: refused, nothing spent.
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        settlement.submitClaim(
            claim(settlement, chain, hospital, victim_policy, diag, chain_id=chain.chain_id + 1),
            sender=copier,
        )

    before = patient.balance
    receipt = settlement.submitClaim(rightful, sender=relayer)
    [paid] = events(receipt, settlement, "ClaimPaid")
    assert (paid.policyId, paid.holder, paid.amount) == (victim_policy, patient.address, E18)
    assert patient.balance - before == E18


def test_tampered_output_is_rejected_by_the_real_verifier(
    insurance, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer
):
    settlement, _, product, policy = insurance
    diag = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[5]), proof_dir)
    policy_id = policy(product())
    out = _output_index(diagnostic_bundle)
    forged = list(diag.proof.instances)
    forged[out] = BN254_R - 100_000  # "very malignant"
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, diag, instances=forged), sender=relayer
        )
    aliased = list(diag.proof.instances)
    aliased[out] += BN254_R  # same residue, non-canonical encoding
    with reverts(settlement.ModelRegistryInstanceNotInField, index=out, value=aliased[out]):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, diag, instances=aliased), sender=relayer
        )
    flipped = bytearray(diag.proof.proof)
    flipped[POINT_BYTES + 13] ^= 1  # past the input commitment
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, _with_proof(diag, bytes(flipped))),
            sender=relayer,
        )
    assert settlement.claimOfCommitment(policy_id, diag.commitment) == 0


def test_tampered_input_commitment_is_rejected_by_the_real_verifier(
    real, insurance, diagnostic_bundle, dataset, proof_dir, chain, hospital, relayer
):
    """The input commitment is the proof's first G1 point: another point (attested as such) fails
    the real verifier, a non-canonical encoding of the same point is refused before it, and an
    attestation over another commitment does not match the proof's."""
    settlement, _, product, policy = insurance
    diag = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[6]), proof_dir)
    assert diag.commitment == proof_commitment(diag.proof.proof)
    policy_id = policy(product())
    moved = bytearray(diag.proof.proof)
    moved[31] ^= 1  # the point's x, lowest byte: still < q, another point (or none)
    other = _with_proof(diag, bytes(moved))
    other = dataclasses.replace(other, commitment=proof_commitment(bytes(moved)))
    with reverts(settlement.ModelRegistryProofRejected, modelId=REAL_DIAG, version=1):
        settlement.submitClaim(claim(settlement, chain, hospital, policy_id, other), sender=relayer)
    q = real[0].baseFieldModulus()
    aliased = bytearray(diag.proof.proof)
    aliased[:32] = (int.from_bytes(aliased[:32], "big") + q).to_bytes(32, "big")  # x + q < 2^256
    with reverts(settlement.ModelRegistryInputCommitmentNotCanonical, proofIndex=0):
        settlement.submitClaim(
            claim(settlement, chain, hospital, policy_id, _with_proof(diag, bytes(aliased))),
            sender=relayer,
        )
    lied = dataclasses.replace(diag, commitment=diag.commitment ^ 1)
    with reverts(
        settlement.ClaimSettlementCommitmentMismatch,
        attested=lied.commitment,
        proven=diag.commitment,
    ):
        settlement.submitClaim(claim(settlement, chain, hospital, policy_id, lied), sender=relayer)
    assert settlement.claimOfCommitment(policy_id, diag.commitment) == 0
    settlement.submitClaim(claim(settlement, chain, hospital, policy_id, diag), sender=relayer)
    assert settlement.claimOfCommitment(policy_id, diag.commitment) != 0


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
def researcher_weights(researcher_onnx) -> Weights:
    return weights_of(researcher_onnx)


@pytest.fixture(scope="module")
def prove_for(eval_bundle, proof_dir, chain, researcher_weights):
    """``prove_for(bounty, bounty_id, researcher, weights=…, chain_id=…)``: a real proof."""

    def prove(bounty, bounty_id, who, weights=None, chain_id=None):
        context = submission_context(
            chain.chain_id if chain_id is None else chain_id, bounty.address, bounty_id, who.address
        )
        assert chain_id is not None or context == bounty.submissionContext(bounty_id, who)
        return prove_evaluation(eval_bundle, weights or researcher_weights, context, proof_dir)

    return prove


@pytest.fixture(scope="module")
def make_real_bounty(real, deployer, chain, eval_bundle):
    def make(min_correct: int = 105, bounty=None) -> int:
        bounty = bounty or real[2]
        params = (
            ETH,
            E18,
            REAL_EVAL,
            1,
            context_scale(eval_bundle),
            min_correct,
            chain.pending_timestamp + 86400,
        )
        receipt = bounty.createBounty(params, value=E18, sender=deployer)
        return receipt.decode_logs(bounty.BountyCreated)[0].bountyId

    return make


def _commit(bounty, bounty_id, who, weights, salt):
    bounty.commit(bounty.submissionCommitment(bounty_id, who, weights, salt), sender=who)


def _reveal(bounty, bounty_id, who, result, salt, sender):
    return bounty.reveal(
        bounty_id,
        who,
        result.weights_commitment,
        salt,
        result.proof.proof,
        list(result.proof.instances),
        sender=sender,
    )


@pytest.fixture(scope="module")
def won(real, make_real_bounty, prove_for, researcher, relayer, chain):
    """A bounty won with a real proof: (bounty id, the revealed proof, salt, receipt, balance +)."""
    _, _, bounty = real
    bounty_id = make_real_bounty()
    result = prove_for(bounty, bounty_id, researcher)
    assert result.correct >= 105  # of the 114 held-out patients
    salt = b32("researcher-salt")
    _commit(bounty, bounty_id, researcher, result.weights_commitment, salt)
    chain.mine()
    before = researcher.balance
    receipt = _reveal(bounty, bounty_id, researcher, result, salt, relayer)
    return bounty_id, result, salt, receipt, researcher.balance - before


def test_private_model_meeting_the_metric_is_paid(real, won, researcher):
    _, _, bounty = real
    bounty_id, result, _, receipt, gained = won
    [award] = events(receipt, bounty, "BountyAwarded")
    assert (award.bountyId, award.researcher, award.weightsCommitment, award.metric) == (
        bounty_id,
        researcher.address,
        result.weights_commitment,
        result.correct,
    )
    assert gained == E18


def test_revealed_proof_does_not_pay_another_bounty(real, won, make_real_bounty, researcher, chain):
    """Same model, same benchmark, same researcher, a second bounty: the context differs."""
    _, _, bounty = real
    _, result, _, _, _ = won
    other = make_real_bounty()
    salt = b32("replay-other-bounty")
    _commit(bounty, other, researcher, result.weights_commitment, salt)
    chain.mine()
    with reverts(bounty.ResearchBountyContextMismatch, bountyId=other, researcher=researcher):
        _reveal(bounty, other, researcher, result, salt, researcher)


def test_revealed_proof_does_not_pay_a_copier(real, won, make_real_bounty, copier, chain):
    """A copier commits the published weights commitment for itself: the context is not its own."""
    _, _, bounty = real
    _, result, _, _, _ = won
    fresh = make_real_bounty()
    salt = b32("copier")
    _commit(bounty, fresh, copier, result.weights_commitment, salt)
    chain.mine()
    with reverts(bounty.ResearchBountyContextMismatch, bountyId=fresh, researcher=copier):
        _reveal(bounty, fresh, copier, result, salt, copier)


def test_revealed_proof_does_not_pay_on_another_contract(
    project, real, won, make_real_bounty, deployer, researcher, chain
):
    registry, _, _ = real
    _, result, _, _, _ = won
    twin = deployer.deploy(project.ResearchBounty, registry, 1)
    bounty_id = make_real_bounty(bounty=twin)
    salt = b32("replay-other-contract")
    _commit(twin, bounty_id, researcher, result.weights_commitment, salt)
    chain.mine()
    with reverts(twin.ResearchBountyContextMismatch, bountyId=bounty_id, researcher=researcher):
        _reveal(twin, bounty_id, researcher, result, salt, researcher)


def test_proof_made_for_another_chain_is_refused(
    real, make_real_bounty, prove_for, researcher, chain
):
    _, _, bounty = real
    bounty_id = make_real_bounty()
    result = prove_for(bounty, bounty_id, researcher, chain_id=chain.chain_id + 1)
    salt = b32("other-chain")
    _commit(bounty, bounty_id, researcher, result.weights_commitment, salt)
    chain.mine()
    with reverts(bounty.ResearchBountyContextMismatch, bountyId=bounty_id, researcher=researcher):
        _reveal(bounty, bounty_id, researcher, result, salt, researcher)


def test_model_below_the_metric_is_refused(
    real, make_real_bounty, prove_for, researcher_weights, researcher, chain
):
    _, _, bounty = real
    bounty_id = make_real_bounty()
    inverted = Weights(-researcher_weights.w, -researcher_weights.b)
    result = prove_for(bounty, bounty_id, researcher, weights=inverted)
    assert result.correct < 105
    salt = b32("inverted")
    _commit(bounty, bounty_id, researcher, result.weights_commitment, salt)
    chain.mine()
    with reverts(
        bounty.ResearchBountyMetricBelowMinimum,
        bountyId=bounty_id,
        metric=result.correct,
        minMetric=105,
    ):
        _reveal(bounty, bounty_id, researcher, result, salt, researcher)


def test_copied_real_proof_never_pays_the_copier(
    real, make_real_bounty, prove_for, researcher, copier, chain
):
    """Automine off: the copier races the researcher's reveal with a higher tip."""
    _, _, bounty = real
    bounty_id = make_real_bounty()
    result = prove_for(bounty, bounty_id, researcher)
    salt = b32("honest")
    weights = result.weights_commitment
    _commit(bounty, bounty_id, researcher, weights, salt)
    chain.mine()
    proof, inst = result.proof.proof, list(result.proof.instances)
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
