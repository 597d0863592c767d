"""ModelRegistry's batch verifiers: registration next to the single verifier (registrar only,
code hash pinned, once per version), revoked with the version, and verifyBatch's named errors;
then the generated batch verifier with real proofs."""

from __future__ import annotations

import pytest
from ape.contracts import ContractContainer
from eth_abi import decode
from eth_utils import keccak
from ethpm_types import ContractType
from web3.exceptions import ContractLogicError

from prover.deploy import instance_layout
from prover.models.breast_cancer import DiagnosisProof, prove_diagnosis
from prover.models.card import ModelCard
from prover.zk.circuit import Bundle
from prover.zk.commitment import proof_commitment
from prover.zk.fields import BN254_R

from .conftest import code_hash
from .helpers import (
    BATCH_ACCEPT_ALL,
    BATCH_COMMITTED,
    BN254_Q,
    DIAG_MODEL,
    FIELD_MODULUS,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    PROOF_COMMITMENT,
    VK_SHA,
    committed_proof,
    events,
    point_commitment,
    reverts,
)

NO_INDEX = 2**256 - 1
ACCEPT, REJECT_PROOF, FAIL_PAIRING, RETURN_FALSE, REVERT_EMPTY = range(5)
PROOFS = [b"\x01" * 64, b"\x02" * 64]
INSTANCES = [[11, ONE], [12, FIELD_MODULUS - ONE]]


def call_reverts(contract, error: str, method: str, *args, **inputs) -> None:
    """A view call reverts with custom error ``error`` and exactly these ``inputs``.

    Decoded here from the raw revert data: ape-foundry does not decode every custom error of
    an ``eth_call`` (it reads some as strings), so ``reverts`` could compare the wrong values.
    """
    abi = getattr(contract, error).abi
    data = getattr(contract, method).as_transaction(*args).data
    with pytest.raises(ContractLogicError) as info:
        contract.provider.web3.eth.call({"to": contract.address, "data": data})
    raw = bytes.fromhex(str(info.value.data)[2:])
    assert raw[:4] == keccak(text=abi.selector)[:4], f"expected {error}, got {raw.hex()}"
    values = decode([i.canonical_type for i in abi.inputs], raw[4:])
    actual = dict(zip([i.name for i in abi.inputs], values, strict=True))
    assert actual == {k: str(v).lower() if k == "verifier" else v for k, v in inputs.items()}


@pytest.fixture
def mock_batch(project, deployer):
    return deployer.deploy(project.MockBatchVerifier)


@pytest.fixture
def with_batch(registry, chain, deployer, mock_batch):
    registry.registerBatchVerifier(
        DIAG_MODEL, 1, mock_batch, code_hash(chain, mock_batch), sender=deployer
    )
    return mock_batch


# ------------------------------------------------------------------------------ registration


def test_register_batch_verifier_pins_its_code_hash_and_emits(
    registry, chain, deployer, mock_batch
):
    pinned = code_hash(chain, mock_batch)
    receipt = registry.registerBatchVerifier(DIAG_MODEL, 1, mock_batch, pinned, sender=deployer)
    assert [
        (e.modelId, e.version, e.batchVerifier, e.codeHash)
        for e in events(receipt, registry, "BatchVerifierRegistered")
    ] == [(DIAG_MODEL, 1, mock_batch.address, pinned)]
    record = registry.getBatchVerifier(DIAG_MODEL, 1)
    assert (record.verifier, record.codeHash) == (mock_batch.address, pinned)
    # the single verifier's record is untouched
    assert registry.getModelVersion(DIAG_MODEL, 1).verifierCodeHash != pinned


def test_only_a_registrar_may_register_a_batch_verifier(
    registry, chain, stranger, guardian, mock_batch
):
    role = registry.REGISTRAR_ROLE()
    for who in (stranger, guardian):
        with reverts(
            registry.AccessControlUnauthorizedAccount, account=who.address, neededRole=role
        ):
            registry.registerBatchVerifier(
                DIAG_MODEL, 1, mock_batch, code_hash(chain, mock_batch), sender=who
            )
    assert registry.getBatchVerifier(DIAG_MODEL, 1).verifier == "0x" + "00" * 20


def test_a_batch_verifier_is_registered_once_per_version(
    registry, chain, deployer, with_batch, project
):
    other = deployer.deploy(project.MockBatchVerifier)
    with reverts(
        registry.ModelRegistryBatchVerifierAlreadyRegistered,
        modelId=DIAG_MODEL,
        version=1,
        batchVerifier=with_batch.address,
    ):
        registry.registerBatchVerifier(
            DIAG_MODEL, 1, other, code_hash(chain, other), sender=deployer
        )


def test_register_batch_verifier_checks_version_code_and_hash(
    registry, chain, deployer, guardian, mock_batch, stranger
):
    pinned = code_hash(chain, mock_batch)
    with reverts(registry.ModelRegistryUnknownVersion, modelId=DIAG_MODEL, version=9):
        registry.registerBatchVerifier(DIAG_MODEL, 9, mock_batch, pinned, sender=deployer)
    with reverts(registry.ModelRegistryVerifierHasNoCode, verifier=stranger.address):
        registry.registerBatchVerifier(DIAG_MODEL, 1, stranger, pinned, sender=deployer)
    wrong = b"\x11" * 32
    with reverts(
        registry.ModelRegistryVerifierCodeHashMismatch,
        verifier=mock_batch.address,
        expected=wrong,
        actual=pinned,
    ):
        registry.registerBatchVerifier(DIAG_MODEL, 1, mock_batch, wrong, sender=deployer)
    registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    with reverts(registry.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
        registry.registerBatchVerifier(DIAG_MODEL, 1, mock_batch, pinned, sender=deployer)


def test_register_batch_verifier_refused_once_stopped(
    registry, chain, deployer, guardian, mock_batch
):
    registry.stop(sender=guardian)
    with reverts(registry.ModelRegistryStopped):
        registry.registerBatchVerifier(
            DIAG_MODEL, 1, mock_batch, code_hash(chain, mock_batch), sender=deployer
        )


# ------------------------------------------------------------------------------ verifyBatch


def test_verify_batch_decodes_every_proof(registry, with_batch, stranger):
    """Anyone may call it (a view); outputs decoded per the version's layout."""
    commitments, outputs = registry.verifyBatch(DIAG_MODEL, 1, PROOFS, INSTANCES, sender=stranger)
    assert list(commitments) == [11, 12]
    assert [list(o) for o in outputs] == [[ONE], [-ONE]]


def test_verify_batch_without_a_batch_verifier(registry):
    call_reverts(
        registry,
        "ModelRegistryNoBatchVerifier",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        INSTANCES,
        modelId=DIAG_MODEL,
        version=1,
    )


def test_verify_batch_checks_shape_and_instances(registry, with_batch):
    call_reverts(
        registry,
        "ModelRegistryInvalidBatch",
        "verifyBatch",
        DIAG_MODEL,
        1,
        [],
        [],
        proofs=0,
        instances=0,
    )
    call_reverts(
        registry,
        "ModelRegistryInvalidBatch",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        INSTANCES[:1],
        proofs=2,
        instances=1,
    )
    call_reverts(
        registry,
        "ModelRegistryInstanceCountMismatch",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        [INSTANCES[0], [1, 2, 3]],
        expected=2,
        actual=3,
    )
    call_reverts(
        registry,
        "ModelRegistryInstanceNotInField",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        [INSTANCES[0], [1, FIELD_MODULUS]],
        index=1,
        value=FIELD_MODULUS,
    )
    call_reverts(
        registry,
        "ModelRegistryUnknownVersion",
        "verifyBatch",
        DIAG_MODEL,
        2,
        PROOFS,
        INSTANCES,
        modelId=DIAG_MODEL,
        version=2,
    )


@pytest.mark.parametrize(
    ("mode", "index"),
    [
        (REJECT_PROOF, 1),
        (FAIL_PAIRING, NO_INDEX),
        (RETURN_FALSE, NO_INDEX),
        (REVERT_EMPTY, NO_INDEX),
    ],
)
def test_a_rejected_batch_names_the_proof_when_known(registry, with_batch, deployer, mode, index):
    with_batch.setMode(mode, 1, sender=deployer)
    call_reverts(
        registry,
        "ModelRegistryBatchRejected",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        INSTANCES,
        modelId=DIAG_MODEL,
        version=1,
        index=index,
    )


def test_revoking_the_version_revokes_its_batch_verifier(registry, with_batch, guardian):
    registry.verifyBatch(DIAG_MODEL, 1, PROOFS, INSTANCES)
    registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    call_reverts(
        registry,
        "ModelRegistryVersionRevoked",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        INSTANCES,
        modelId=DIAG_MODEL,
        version=1,
    )
    assert registry.isActive(DIAG_MODEL, 1) is False


def test_verify_batch_refused_once_stopped(registry, with_batch, guardian):
    registry.stop(sender=guardian)
    call_reverts(registry, "ModelRegistryStopped", "verifyBatch", DIAG_MODEL, 1, PROOFS, INSTANCES)


def test_verify_batch_rejects_changed_batch_verifier_code(
    registry, chain, deployer, with_batch, project
):
    registered = code_hash(chain, with_batch)
    other = deployer.deploy(project.RevertingReceiver)
    chain.provider.set_code(
        with_batch.address, bytes(chain.provider.web3.eth.get_code(other.address))
    )
    call_reverts(
        registry,
        "ModelRegistryVerifierCodeChanged",
        "verifyBatch",
        DIAG_MODEL,
        1,
        PROOFS,
        INSTANCES,
        verifier=with_batch.address,
        registered=registered,
        current=code_hash(chain, with_batch),
    )


# ------------------------------------------------------------------------------ proof commitment

PC_INSTANCES = [[ONE], [FIELD_MODULUS - ONE]]
PC_PROOFS = [committed_proof(1, 2, PC_INSTANCES[0]), committed_proof(3, 4, PC_INSTANCES[1])]


@pytest.fixture
def registry_batch_committed(project, registry, chain, deployer):
    """DIAG_MODEL v2 with layout {1, PROOF_COMMITMENT, 0, 1} and a MockBatchVerifier in Committed
    mode (proof i valid iff bound to its first point and instances[i])."""
    single = deployer.deploy(project.MockVerifier)
    registry.registerModel(
        DIAG_MODEL,
        2,
        single,
        code_hash(chain, single),
        ONNX_SHA,
        VK_SHA,
        (1, PROOF_COMMITMENT, 0, 1, OUTPUT_SCALE),
        sender=deployer,
    )
    mock = deployer.deploy(project.MockBatchVerifier)
    mock.setMode(BATCH_COMMITTED, 0, sender=deployer)
    registry.registerBatchVerifier(DIAG_MODEL, 2, mock, code_hash(chain, mock), sender=deployer)
    return mock


def test_verify_batch_returns_each_proofs_own_commitment(registry, registry_batch_committed):
    commitments, outputs = registry.verifyBatch(DIAG_MODEL, 2, PC_PROOFS, PC_INSTANCES)
    expected = [point_commitment(p) for p in PC_PROOFS]
    assert expected[0] != expected[1]
    assert list(commitments) == expected
    assert [list(o) for o in outputs] == [[ONE], [-ONE]]
    swapped_commitments, swapped_outputs = registry.verifyBatch(
        DIAG_MODEL, 2, PC_PROOFS[::-1], PC_INSTANCES[::-1]
    )
    assert list(swapped_commitments) == expected[::-1]
    assert [list(o) for o in swapped_outputs] == [[-ONE], [ONE]]
    # Proofs swapped against their instances: the (mock) batch verifier names proof 0.
    call_reverts(
        registry,
        "ModelRegistryBatchRejected",
        "verifyBatch",
        DIAG_MODEL,
        2,
        PC_PROOFS[::-1],
        PC_INSTANCES,
        modelId=DIAG_MODEL,
        version=2,
        index=0,
    )


@pytest.mark.parametrize(
    "bad",
    [
        PC_PROOFS[1][:63],
        committed_proof(BN254_Q, 4, PC_INSTANCES[1]),
        committed_proof(3, BN254_Q, PC_INSTANCES[1]),
        committed_proof(3, 2**256 - 1, PC_INSTANCES[1]),
    ],
    ids=["63-bytes", "x-is-q", "y-is-q", "huge-y"],
)
def test_verify_batch_refuses_a_non_canonical_first_point_by_index(
    registry, registry_batch_committed, deployer, bad
):
    """Refused by the registry before the batch verifier (here one that accepts anything)."""
    registry_batch_committed.setMode(BATCH_ACCEPT_ALL, 0, sender=deployer)
    call_reverts(
        registry,
        "ModelRegistryInputCommitmentNotCanonical",
        "verifyBatch",
        DIAG_MODEL,
        2,
        [PC_PROOFS[0], bad],
        PC_INSTANCES,
        proofIndex=1,
    )


# ------------------------------------------------------------------------------ real proofs


def _container(artifact: dict) -> ContractContainer:
    return ContractContainer(
        ContractType.model_validate(
            {
                "contractName": artifact["contractName"],
                "abi": artifact["abi"],
                "deploymentBytecode": {"bytecode": artifact["bytecode"]},
                "runtimeBytecode": {"bytecode": artifact["deployedBytecode"]},
            }
        )
    )


@pytest.fixture(scope="module")
def registry_batch_real(project, chain, deployer, guardian, diagnostic_bundle: Bundle):
    """A registry with the diagnostic model's real single and batch verifiers (version 1)."""
    single = deployer.deploy(_container(diagnostic_bundle.verifier_artifact))
    batch = deployer.deploy(_container(diagnostic_bundle.batch_verifier_artifact))
    reg = deployer.deploy(project.ModelRegistry, deployer)
    reg.grantRole(reg.REGISTRAR_ROLE(), deployer, sender=deployer)
    reg.grantRole(reg.GUARDIAN_ROLE(), guardian, sender=deployer)
    reg.registerModel(
        DIAG_MODEL,
        1,
        single,
        code_hash(chain, single),
        ONNX_SHA,
        VK_SHA,
        instance_layout(diagnostic_bundle),
        sender=deployer,
    )
    reg.registerBatchVerifier(DIAG_MODEL, 1, batch, code_hash(chain, batch), sender=deployer)
    return reg


@pytest.fixture(scope="module")
def registry_batch_diagnoses(diagnostic_bundle, dataset, proof_dir) -> list[DiagnosisProof]:
    return [
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[i]), proof_dir) for i in range(3)
    ]


def test_real_batch_matches_verify_one_by_one(
    registry_batch_real, registry_batch_diagnoses, deployer, diagnostic_bundle
):
    reg = registry_batch_real
    proofs = [d.proof.proof for d in registry_batch_diagnoses]
    instances = [list(d.proof.instances) for d in registry_batch_diagnoses]
    commitments, outputs = reg.verifyBatch(DIAG_MODEL, 1, proofs, instances)
    singles = [reg.verify.call(DIAG_MODEL, 1, p, i) for p, i in zip(proofs, instances, strict=True)]
    assert (
        list(commitments)
        == [c for c, _ in singles]
        == [d.commitment for d in registry_batch_diagnoses]
        == [proof_commitment(p) for p in proofs]  # the hash of each proof's first G1 point
    )
    assert len(set(commitments)) == len(proofs)
    assert [list(o) for o in outputs] == [list(o) for _, o in singles]
    assert [len(o) for o in outputs] == [ModelCard.of(diagnostic_bundle).output_count] * 3
    assert OUTPUT_SCALE > 0  # outputs are fixed-point, decoded by the registry


def test_real_batch_with_one_bad_proof_fails_as_a_whole(
    registry_batch_real, registry_batch_diagnoses, diagnostic_bundle
):
    proofs = [d.proof.proof for d in registry_batch_diagnoses]
    good = [list(d.proof.instances) for d in registry_batch_diagnoses]
    out = ModelCard.of(diagnostic_bundle).instance_layout.output_indexes[0]
    lying = [list(i) for i in good]
    lying[2][out] = (lying[2][out] + 1) % BN254_R  # a claimed output the proof does not prove
    call_reverts(
        registry_batch_real,
        "ModelRegistryBatchRejected",
        "verifyBatch",
        DIAG_MODEL,
        1,
        proofs,
        lying,
        modelId=DIAG_MODEL,
        version=1,
        index=NO_INDEX,
    )
    broken = bytearray(proofs[1])
    broken[40] ^= 1  # the input commitment (first point, its y) leaves the curve: proof 1 fails
    call_reverts(
        registry_batch_real,
        "ModelRegistryBatchRejected",
        "verifyBatch",
        DIAG_MODEL,
        1,
        [proofs[0], bytes(broken), proofs[2]],
        good,
        modelId=DIAG_MODEL,
        version=1,
        index=1,
    )
