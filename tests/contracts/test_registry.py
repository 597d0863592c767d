"""ModelRegistry: registration, roles, tombstones, emergency stop, verify's named errors, decoding."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import code_hash
from .helpers import (
    ACCEPT_ALL,
    ACTIVE,
    BN254_Q,
    COMMITTED,
    DIAG_MODEL,
    ETH,
    FIELD_MODULUS,
    HALF_MODULUS,
    ONNX_SHA,
    OUTPUT_SCALE,
    PROOF_COMMITMENT,
    REJECT_ALL,
    RETURN_FALSE,
    RETURN_NON_BOOL,
    RETURN_SHORT,
    REVOKED,
    UNREGISTERED,
    VK_SHA,
    committed_proof,
    decode_signed,
    encode_signed,
    events,
    mock_proof,
    point_commitment,
    reverts,
)

LAYOUT = (2, 0, 1, 1, OUTPUT_SCALE)


@pytest.fixture
def new_verifier(project, deployer):
    return deployer.deploy(project.MockVerifier)


def register(
    registry, chain, sender, verifier, *, version=2, layout=LAYOUT, model=DIAG_MODEL, codehash=None
):
    return registry.registerModel(
        model,
        version,
        verifier,
        codehash or code_hash(chain, verifier),
        ONNX_SHA,
        VK_SHA,
        layout,
        sender=sender,
    )


def test_register_stores_record_and_emits(registry, chain, deployer, new_verifier):
    receipt = register(registry, chain, deployer, new_verifier, layout=(4, 3, 1, 2, 16))
    [ev] = events(receipt, registry, "ModelRegistered")
    assert ev.modelId == DIAG_MODEL and ev.version == 2 and ev.verifier == new_verifier.address
    assert ev.verifierCodeHash == code_hash(chain, new_verifier)
    assert ev.onnxSha256 == ONNX_SHA and ev.vkSha256 == VK_SHA
    assert tuple(ev.layout) == (4, 3, 1, 2, 16)
    rec = registry.getModelVersion(DIAG_MODEL, 2)
    assert rec.verifier == new_verifier.address and rec.status == ACTIVE
    assert (
        rec.instanceCount,
        rec.inputIndex,
        rec.outputIndex,
        rec.outputCount,
        rec.outputScale,
    ) == (4, 3, 1, 2, 16)
    assert rec.onnxSha256 == ONNX_SHA and rec.vkSha256 == VK_SHA
    assert registry.isActive(DIAG_MODEL, 2)
    assert registry.getModelVersion(DIAG_MODEL, 3).status == UNREGISTERED


def test_non_registrar_cannot_register(registry, chain, stranger, new_verifier):
    with reverts(
        registry.AccessControlUnauthorizedAccount,
        account=stranger.address,
        neededRole=registry.REGISTRAR_ROLE(),
    ):
        register(registry, chain, stranger, new_verifier)


def test_non_admin_cannot_grant_roles(registry, stranger, guardian):
    with reverts(
        registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=b"\x00" * 32
    ):
        registry.grantRole(registry.REGISTRAR_ROLE(), stranger, sender=stranger)
    # A guardian is not an admin either.
    with reverts(registry.AccessControlUnauthorizedAccount, account=guardian.address):
        registry.grantRole(registry.GUARDIAN_ROLE(), stranger, sender=guardian)


def test_non_guardian_cannot_revoke_or_stop(registry, deployer, stranger):
    role = registry.GUARDIAN_ROLE()
    with reverts(
        registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=role
    ):
        registry.revokeModel(DIAG_MODEL, 1, sender=stranger)
    # The admin/registrar is not a guardian.
    with reverts(
        registry.AccessControlUnauthorizedAccount, account=deployer.address, neededRole=role
    ):
        registry.stop(sender=deployer)


def test_register_rejects_verifier_without_code(registry, deployer, stranger):
    empty = keccak(b"")
    with reverts(registry.ModelRegistryVerifierHasNoCode, verifier=stranger.address):
        registry.registerModel(
            DIAG_MODEL, 2, stranger, empty, ONNX_SHA, VK_SHA, LAYOUT, sender=deployer
        )


def test_register_rejects_unexpected_code_hash(registry, chain, deployer, new_verifier):
    wrong = keccak(text="audited something else")
    with reverts(
        registry.ModelRegistryVerifierCodeHashMismatch,
        verifier=new_verifier.address,
        expected=wrong,
        actual=code_hash(chain, new_verifier),
    ):
        register(registry, chain, deployer, new_verifier, codehash=wrong)


@pytest.mark.parametrize(
    "layout",
    [
        (0, 0, 0, 1, 14),
        (2, 2, 1, 1, 14),
        (2, 0, 2, 1, 14),
        (2, 1, 1, 1, 14),
        (2, 0, 1, 1, 129),
        (2, 0, 1, 0, 14),
        (4, 0, 2, 3, 14),
        (4, 2, 1, 3, 14),
        (4, 3, 1, 3, 14),
        (2**16 - 1, 0, 2**16 - 1, 2**16 - 1, 14),
    ],
    ids=[
        "empty",
        "input-out-of-range",
        "output-out-of-range",
        "same-index",
        "scale-too-large",
        "no-output",
        "outputs-past-the-end",
        "input-inside-outputs",
        "input-is-last-output",
        "output-range-overflows-uint16",
    ],
)
def test_register_rejects_invalid_layout(registry, chain, deployer, new_verifier, layout):
    count, inp, out, out_count, scale = layout
    with reverts(
        registry.ModelRegistryInvalidLayout,
        instanceCount=count,
        inputIndex=inp,
        outputIndex=out,
        outputCount=out_count,
        outputScale=scale,
    ):
        register(registry, chain, deployer, new_verifier, layout=layout)


@pytest.mark.parametrize(
    "layout",
    [(11, 0, 1, 10, 14), (4, 3, 0, 3, 14), (3, 1, 2, 1, 0), (2, 0, 1, 1, 128)],
    ids=["cnn-10-logits", "input-after-outputs", "gap-before-outputs", "max-scale"],
)
def test_register_accepts_edge_layouts(registry, chain, deployer, new_verifier, layout):
    register(registry, chain, deployer, new_verifier, layout=layout)
    rec = registry.getModelVersion(DIAG_MODEL, 2)
    assert (
        rec.instanceCount,
        rec.inputIndex,
        rec.outputIndex,
        rec.outputCount,
        rec.outputScale,
    ) == layout


def test_register_twice_reverts(registry, chain, deployer, verifier):
    with reverts(registry.ModelRegistryVersionAlreadyRegistered, modelId=DIAG_MODEL, version=1):
        register(registry, chain, deployer, verifier, version=1)


def test_revoked_version_is_a_tombstone(
    registry, chain, deployer, guardian, verifier, new_verifier
):
    receipt = registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    [ev] = events(receipt, registry, "ModelRevoked")
    assert (ev.modelId, ev.version, ev.guardian) == (DIAG_MODEL, 1, guardian.address)
    assert registry.getModelVersion(DIAG_MODEL, 1).status == REVOKED
    assert not registry.isActive(DIAG_MODEL, 1)
    instances = [7, encode_signed(1)]
    with reverts(registry.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
        registry.verify(DIAG_MODEL, 1, mock_proof(instances), instances, sender=deployer)
    # Never again: not with the same verifier, not with a new one.
    for v in (verifier, new_verifier):
        with reverts(registry.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
            register(registry, chain, deployer, v, version=1)
    with reverts(registry.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=1):
        registry.revokeModel(DIAG_MODEL, 1, sender=guardian)
    # Other versions are unaffected; a new version number can be registered.
    register(registry, chain, deployer, new_verifier, version=2)
    assert registry.isActive(DIAG_MODEL, 2)


def test_revoke_unknown_version(registry, guardian):
    with reverts(registry.ModelRegistryUnknownVersion, modelId=DIAG_MODEL, version=9):
        registry.revokeModel(DIAG_MODEL, 9, sender=guardian)


def test_permanent_stop(registry, chain, deployer, guardian, new_verifier):
    receipt = registry.stop(sender=guardian)
    assert events(receipt, registry, "RegistryStopped")[0].guardian == guardian.address
    assert registry.stopped() and not registry.isActive(DIAG_MODEL, 1)
    instances = [7, 1]
    with reverts(registry.ModelRegistryStopped):
        registry.verify(DIAG_MODEL, 1, mock_proof(instances), instances, sender=deployer)
    with reverts(registry.ModelRegistryStopped):
        register(registry, chain, deployer, new_verifier)
    with reverts(registry.ModelRegistryStopped):
        registry.stop(sender=guardian)


# ------------------------------------------------------------------------------------------ verify


def test_verify_returns_commitment_and_decoded_output(registry):
    for out in (0, 1, -1, 3 << OUTPUT_SCALE, -(5 << OUTPUT_SCALE), HALF_MODULUS, -HALF_MODULUS):
        instances = [123456789, encode_signed(out)]
        commitment, outputs = registry.verify.call(DIAG_MODEL, 1, mock_proof(instances), instances)
        assert (commitment, list(outputs)) == (123456789, [out])


def test_verify_returns_every_output_in_order(registry, chain, deployer, new_verifier):
    """Layout {5, input 4, outputs 1..3}: [extra, out0, out1, out2, commitment] -> [out0, out1, out2]."""
    register(registry, chain, deployer, new_verifier, layout=(5, 4, 1, 3, OUTPUT_SCALE))
    values = [-(2 << OUTPUT_SCALE), 0, HALF_MODULUS]
    instances = [77, *(encode_signed(v) for v in values), 424242]
    commitment, outputs = registry.verify.call(DIAG_MODEL, 2, mock_proof(instances), instances)
    assert (commitment, list(outputs)) == (424242, values)


def test_verify_unknown_version(registry, deployer):
    with reverts(registry.ModelRegistryUnknownVersion, modelId=DIAG_MODEL, version=7):
        registry.verify(DIAG_MODEL, 7, b"", [1, 2], sender=deployer)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_verify_instance_count_mismatch(registry, deployer, count):
    instances = list(range(1, count + 1))
    with reverts(registry.ModelRegistryInstanceCountMismatch, expected=2, actual=count):
        registry.verify(DIAG_MODEL, 1, mock_proof(instances), instances, sender=deployer)


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("value", [FIELD_MODULUS, FIELD_MODULUS + 1, 2**256 - 1])
def test_verify_instance_not_in_field(registry, deployer, index, value):
    instances = [5, 6]
    instances[index] = value
    with reverts(registry.ModelRegistryInstanceNotInField, index=index, value=value):
        registry.verify(DIAG_MODEL, 1, mock_proof(instances), instances, sender=deployer)


def test_verify_accepts_largest_field_element(registry):
    instances = [FIELD_MODULUS - 1, FIELD_MODULUS - 1]
    commitment, outputs = registry.verify.call(DIAG_MODEL, 1, mock_proof(instances), instances)
    assert (commitment, list(outputs)) == (FIELD_MODULUS - 1, [-1])


def test_verify_rejects_changed_verifier_code(registry, chain, deployer, verifier, project):
    registered = code_hash(chain, verifier)
    other = deployer.deploy(project.RevertingReceiver)
    chain.provider.set_code(
        verifier.address, bytes(chain.provider.web3.eth.get_code(other.address))
    )
    current = code_hash(chain, verifier)
    assert current != registered
    instances = [1, 2]
    with reverts(
        registry.ModelRegistryVerifierCodeChanged,
        verifier=verifier.address,
        registered=registered,
        current=current,
    ):
        registry.verify(DIAG_MODEL, 1, mock_proof(instances), instances, sender=deployer)


@pytest.mark.parametrize(
    "how",
    [
        "tampered-proof",
        "other-instances",
        "verifier-reverts",
        "verifier-returns-false",
        "verifier-returns-one-byte",
        "verifier-returns-non-bool",
    ],
)
def test_verify_proof_rejected(registry, deployer, verifier, how):
    """Every way a verifier can say no — malformed return data included — is the named error."""
    instances = [11, encode_signed(-3)]
    proof = mock_proof(instances)
    if how == "tampered-proof":
        proof = proof[:-1] + bytes([proof[-1] ^ 1])
    elif how == "other-instances":
        proof = mock_proof([11, encode_signed(3)])
    elif how == "verifier-reverts":
        verifier.setMode(REJECT_ALL, sender=deployer)
    elif how == "verifier-returns-false":
        verifier.setMode(RETURN_FALSE, sender=deployer)
    elif how == "verifier-returns-one-byte":
        verifier.setMode(RETURN_SHORT, sender=deployer)
    else:
        verifier.setMode(RETURN_NON_BOOL, sender=deployer)
    with reverts(registry.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=1):
        registry.verify(DIAG_MODEL, 1, proof, instances, sender=deployer)


# ------------------------------------------------------------------------------------------ proof commitment

PC = PROOF_COMMITMENT
#: A `polycommit` diagnostic model: the single instance is the output.
PC_LAYOUT = (1, PC, 0, 1, OUTPUT_SCALE)
#: A first G1 point with coordinates well inside the base field (the mocks do not check the curve).
POINT = (0x1234, 0x5678)


def test_proof_commitment_constants(registry):
    assert registry.proofCommitmentIndex() == PC == 2**16 - 1
    assert registry.baseFieldModulus() == BN254_Q > FIELD_MODULUS


@pytest.mark.parametrize(
    "layout",
    [PC_LAYOUT, (3, PC, 0, 3, 14), (3, PC, 1, 2, 0), (2**16 - 1, PC, 0, 2**16 - 1, 128)],
    ids=["one-output-at-0", "every-instance-an-output", "gap-before-outputs", "widest"],
)
def test_register_accepts_proof_commitment_layouts(registry, chain, deployer, new_verifier, layout):
    receipt = register(registry, chain, deployer, new_verifier, layout=layout)
    assert tuple(events(receipt, registry, "ModelRegistered")[0].layout) == layout
    rec = registry.getModelVersion(DIAG_MODEL, 2)
    assert (rec.instanceCount, rec.inputIndex, rec.outputIndex, rec.outputCount) == layout[:4]


@pytest.mark.parametrize(
    "layout",
    [
        (0, PC, 0, 1, 14),
        (1, PC, 0, 0, 14),
        (1, PC, 1, 1, 14),
        (2, PC, 1, 2, 14),
        (1, PC, 0, 1, 129),
        (2**16 - 1, PC, 2**16 - 1, 2**16 - 1, 14),
        (2, PC - 1, 0, 1, 14),
    ],
    ids=[
        "empty",
        "no-output",
        "output-out-of-range",
        "outputs-past-the-end",
        "scale-too-large",
        "output-range-overflows-uint16",
        "index-below-the-marker-out-of-range",
    ],
)
def test_register_rejects_invalid_proof_commitment_layouts(
    registry, chain, deployer, new_verifier, layout
):
    count, inp, out, out_count, scale = layout
    with reverts(
        registry.ModelRegistryInvalidLayout,
        instanceCount=count,
        inputIndex=inp,
        outputIndex=out,
        outputCount=out_count,
        outputScale=scale,
    ):
        register(registry, chain, deployer, new_verifier, layout=layout)


def test_verify_returns_the_hash_of_the_proofs_first_point(registry, chain, deployer, new_verifier):
    """The commitment is keccak256(proof[0:64]); outputs are decoded from instance 0 on."""
    new_verifier.setMode(COMMITTED, sender=deployer)
    register(registry, chain, deployer, new_verifier, layout=PC_LAYOUT)
    for out in (0, -1, 3 << OUTPUT_SCALE, -HALF_MODULUS):
        instances = [encode_signed(out)]
        proof = committed_proof(*POINT, instances)
        assert proof == new_verifier.committedProofFor(*POINT, instances)
        commitment, outputs = registry.verify.call(DIAG_MODEL, 2, proof, instances)
        expected = int.from_bytes(
            keccak(POINT[0].to_bytes(32, "big") + POINT[1].to_bytes(32, "big"))
        )
        assert (commitment, list(outputs)) == (expected, [out])
    # The mock binds the proof to its instances: another output is still a rejected proof.
    with reverts(registry.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=2):
        registry.verify(DIAG_MODEL, 2, proof, [encode_signed(1)], sender=deployer)


def test_verify_commitment_is_the_first_point_only(registry, chain, deployer, new_verifier):
    """Two proofs of the same input share their first 64 bytes (and so the commitment); the
    blinded rest differs. Several outputs, all instances: decoded in order."""
    new_verifier.setMode(ACCEPT_ALL, sender=deployer)
    register(registry, chain, deployer, new_verifier, layout=(3, PC, 0, 3, OUTPUT_SCALE))
    values = [-(2 << OUTPUT_SCALE), 0, HALF_MODULUS]
    instances = [encode_signed(v) for v in values]
    head = (BN254_Q - 1).to_bytes(32, "big") * 2  # the largest canonical coordinates
    first = head + keccak(text="blinding 1") * 70
    second = head + keccak(text="blinding 2") * 70
    results = [registry.verify.call(DIAG_MODEL, 2, p, instances) for p in (first, second, head)]
    assert [(c, list(o)) for c, o in results] == [(point_commitment(head), values)] * 3


@pytest.mark.parametrize(
    "mode", [ACCEPT_ALL, REJECT_ALL], ids=["verifier-accepts", "verifier-rejects"]
)
@pytest.mark.parametrize(
    "proof",
    [
        b"",
        committed_proof(*POINT, [1])[:63],
        committed_proof(BN254_Q, POINT[1], [1]),
        committed_proof(POINT[0], BN254_Q, [1]),
        committed_proof(POINT[0] + BN254_Q, POINT[1], [1]),
        committed_proof(2**256 - 1, POINT[1], [1]),
        committed_proof(POINT[0], 2**256 - 1, [1]),
    ],
    ids=["empty", "63-bytes", "x-is-q", "y-is-q", "x-plus-q", "huge-x", "huge-y"],
)
def test_verify_refuses_a_non_canonical_first_point(
    registry, chain, deployer, new_verifier, proof, mode
):
    """Refused by the registry itself, before the verifier: whatever the verifier would answer."""
    new_verifier.setMode(mode, sender=deployer)
    register(registry, chain, deployer, new_verifier, layout=PC_LAYOUT)
    with reverts(registry.ModelRegistryInputCommitmentNotCanonical, proofIndex=0):
        registry.verify(DIAG_MODEL, 2, proof, [1], sender=deployer)


def test_instance_path_does_not_read_the_proof(registry, deployer):
    """An `inputIndex < instanceCount` version: a short proof reaches the verifier (rejected there),
    and the commitment is the instance, not a hash of the proof."""
    instances = [FIELD_MODULUS - 1, 5]
    with reverts(registry.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=1):
        registry.verify(DIAG_MODEL, 1, b"\x01" * 63, instances, sender=deployer)
    commitment, _ = registry.verify.call(DIAG_MODEL, 1, mock_proof(instances), instances)
    assert commitment == FIELD_MODULUS - 1 != point_commitment(mock_proof(instances))


# ------------------------------------------------------------------------------------------ field decoding


def test_decode_boundaries(registry):
    r = FIELD_MODULUS
    assert registry.decodeSigned(0) == 0
    assert registry.decodeSigned(HALF_MODULUS) == HALF_MODULUS
    assert registry.decodeSigned(HALF_MODULUS + 1) == -HALF_MODULUS
    assert registry.decodeSigned(r - 1) == -1
    assert registry.encodeSigned(-1) == r - 1
    assert registry.encodeSigned(-HALF_MODULUS) == HALF_MODULUS + 1
    with reverts(registry.Bn254FieldNotInField, x=r):
        registry.decodeSigned(r)
    with reverts(registry.Bn254FieldOutOfRange, v=HALF_MODULUS + 1):
        registry.encodeSigned(HALF_MODULUS + 1)
    with reverts(registry.Bn254FieldOutOfRange, v=-(2**255)):
        registry.encodeSigned(-(2**255))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    x=st.one_of(
        st.integers(0, FIELD_MODULUS - 1), st.sampled_from([HALF_MODULUS, HALF_MODULUS + 1])
    )
)
def test_decode_matches_python(registry, x):
    v = registry.decodeSigned(x)
    assert v == decode_signed(x)
    assert registry.encodeSigned(v) == x


# ------------------------------------------------------------------------------------------ timelocked admin


def test_admin_changes_go_through_a_timelock(project, chain, deployer, stranger, new_verifier):
    delay = 3600
    timelock = deployer.deploy(project.ResearchDAOTimelock, delay, [deployer], [deployer], ETH)
    registry = deployer.deploy(project.ModelRegistry, timelock)
    role = registry.REGISTRAR_ROLE()
    # Nobody but the timelock can grant - not even the timelock's proposer directly.
    with reverts(registry.AccessControlUnauthorizedAccount, account=deployer.address):
        registry.grantRole(role, stranger, sender=deployer)

    data = registry.grantRole.encode_input(role, stranger)
    salt = b"\x00" * 32
    pred = b"\x00" * 32
    timelock.schedule(registry, 0, data, pred, salt, delay, sender=deployer)
    op_id = timelock.hashOperation(registry, 0, data, pred, salt)
    with reverts(timelock.TimelockUnexpectedOperationState, operationId=op_id):
        timelock.execute(registry, 0, data, pred, salt, sender=deployer)

    chain.mine(deltatime=delay)
    receipt = timelock.execute(registry, 0, data, pred, salt, sender=deployer)
    [granted] = events(receipt, registry, "RoleGranted")
    assert (granted.role, granted.account, granted.sender) == (
        role,
        stranger.address,
        timelock.address,
    )
    register(registry, chain, stranger, new_verifier, version=1)
    assert registry.isActive(DIAG_MODEL, 1)


def test_strict_reverts_helper_rejects_wrong_expectations(registry, deployer):
    """The suite's ``reverts`` helper must fail on a wrong error or wrong inputs, for txs and calls."""
    instances = [1, 2]
    # Transaction path (ape decodes the custom error).
    with pytest.raises(AssertionError):
        with reverts(registry.ModelRegistryVersionRevoked, modelId=DIAG_MODEL, version=9):
            registry.verify(DIAG_MODEL, 9, mock_proof(instances), instances, sender=deployer)
    with pytest.raises(AssertionError):
        with reverts(registry.ModelRegistryUnknownVersion, modelId=DIAG_MODEL, version=8):
            registry.verify(DIAG_MODEL, 9, mock_proof(instances), instances, sender=deployer)
    # eth_call path (ape-foundry leaves the custom error undecoded).
    with pytest.raises(AssertionError):
        with reverts(registry.Bn254FieldOutOfRange):
            registry.decodeSigned(FIELD_MODULUS)
    with pytest.raises(AssertionError):
        with reverts(registry.Bn254FieldNotInField, x=FIELD_MODULUS + 1):
            registry.decodeSigned(FIELD_MODULUS)


def test_real_generated_verifier_rejections_are_named(project, registry, chain, deployer):
    """With the EZKL-generated verifier (if built): its empty `revert(0,0)` becomes ModelRegistryProofRejected."""
    if "BreastCancerLrVerifier" not in project.contracts:
        pytest.skip("contracts/verifiers/ not generated (run `python -m prover build`)")
    real = deployer.deploy(project.BreastCancerLrVerifier)
    register(registry, chain, deployer, real, version=5)
    instances = [12345, encode_signed(-3 << OUTPUT_SCALE)]
    with reverts(registry.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=5):
        registry.verify(DIAG_MODEL, 5, b"\x00" * 64, instances, sender=deployer, gas=3_000_000)
    with reverts(registry.ModelRegistryInstanceNotInField, index=0, value=FIELD_MODULUS):
        registry.verify(DIAG_MODEL, 5, b"\x00" * 64, [FIELD_MODULUS, 0], sender=deployer)
