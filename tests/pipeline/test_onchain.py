"""The generated verifier on anvil: accepts the real proof, rejects every tampering."""

import dataclasses

import pytest

from prover.chain import ChainClient
from prover.exceptions import ProofRejected, VerifierTooLarge
from prover.models.breast_cancer import prove_diagnosis
from prover.zk.fields import BN254_R
from prover.zk.verifier import EIP170_LIMIT, CompiledContract, check_eip170


def _with(proof, *, proof_bytes=None, instances=None):
    return dataclasses.replace(
        proof,
        proof=proof.proof if proof_bytes is None else proof_bytes,
        instances=proof.instances if instances is None else tuple(instances),
    )


def test_real_proof_verifies_by_call_and_transaction(chain_client, verifier_address, diagnosis):
    assert chain_client.call_verify(verifier_address, diagnosis.proof) is True
    receipt = chain_client.send_verify(verifier_address, diagnosis.proof)
    assert receipt["status"] == 1 and 300_000 < receipt["gasUsed"] < 1_000_000


@pytest.mark.parametrize("offset", [0, 64, 1000, -1])
def test_flipped_proof_byte_is_rejected(chain_client, verifier_address, diagnosis, offset):
    raw = bytearray(diagnosis.proof.proof)
    raw[offset] ^= 0x01
    bad = _with(diagnosis.proof, proof_bytes=bytes(raw))
    with pytest.raises(ProofRejected, match="execution reverted"):
        chain_client.call_verify(verifier_address, bad)


def test_flipped_proof_is_rejected_in_a_transaction(chain_client, verifier_address, diagnosis):
    raw = bytearray(diagnosis.proof.proof)
    raw[200] ^= 0x80
    with pytest.raises(ProofRejected, match="transaction"):
        chain_client.send_verify(verifier_address, _with(diagnosis.proof, proof_bytes=bytes(raw)))


def test_changed_instance_is_rejected(chain_client, verifier_address, diagnosis):
    instances = list(diagnosis.proof.instances)  # polycommit: the one output only
    assert len(instances) == 1
    instances[0] = (instances[0] + 1) % BN254_R
    with pytest.raises(ProofRejected):
        chain_client.call_verify(verifier_address, _with(diagnosis.proof, instances=instances))


@pytest.mark.parametrize("shift", [0, 1])
def test_instance_at_or_above_the_field_modulus_is_rejected(
    chain_client, verifier_address, diagnosis, shift
):
    # x + r is the same residue mod r: a verifier that reduced instead of range-checking
    # would accept it, enabling replay of one proof under many encodings.
    instances = list(diagnosis.proof.instances)
    instances[0] = instances[0] + BN254_R if shift else BN254_R
    with pytest.raises(ProofRejected):
        chain_client.call_verify(verifier_address, _with(diagnosis.proof, instances=instances))


def test_wrong_instance_count_is_rejected(chain_client, verifier_address, diagnosis):
    with pytest.raises(ProofRejected):
        chain_client.call_verify(
            verifier_address, _with(diagnosis.proof, instances=diagnosis.proof.instances * 2)
        )


def test_another_records_commitment_in_the_proof_is_rejected(
    chain_client, verifier_address, diagnosis, diagnostic_bundle, dataset, tmp_path
):
    """The first G1 point is the input commitment: a valid point of another record's proof
    spliced in (to claim with another record's attestation) fails verification."""
    other = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[5]), tmp_path)
    spliced = other.proof.proof[:64] + diagnosis.proof.proof[64:]
    with pytest.raises(ProofRejected):
        chain_client.call_verify(verifier_address, _with(diagnosis.proof, proof_bytes=spliced))


def test_proof_from_a_different_model_is_rejected(
    chain_client: ChainClient, verifier_address, other_bundle, dataset, tmp_path
):
    other = prove_diagnosis(other_bundle, list(dataset.x_test[0]), tmp_path)
    with pytest.raises(ProofRejected):
        chain_client.call_verify(verifier_address, other.proof)
    other_verifier = chain_client.deploy(
        bytes.fromhex(other_bundle.verifier_artifact["bytecode"][2:])
    ).address
    assert chain_client.call_verify(other_verifier, other.proof)


def test_deployed_verifier_fits_eip170(diagnostic_bundle, chain_client, verifier_address):
    code = chain_client.w3.eth.get_code(verifier_address)
    assert 0 < len(code) <= EIP170_LIMIT
    assert diagnostic_bundle.manifest["verifier"]["deployed_bytes"] == len(code)


def test_oversized_verifier_is_refused_clearly():
    big = CompiledContract("Huge", [], b"", b"\x00" * (EIP170_LIMIT + 1))
    with pytest.raises(VerifierTooLarge, match="24577 bytes, over EIP-170's 24576-byte limit"):
        check_eip170(big)
