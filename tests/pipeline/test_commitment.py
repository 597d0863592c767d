import pytest

from prover.exceptions import InvalidSalt
from prover.models.breast_cancer import load_preprocessor, prove_diagnosis
from prover.zk import ezkl_api
from prover.zk.commitment import (
    KZG_SALT_LIMBS,
    check_salt,
    commit,
    commit_input,
    new_salt,
    proof_commitment,
    quantize_row,
    salt_entropy_bits,
)
from prover.zk.fields import felt_from_hex

TOP = (1 << 24) - 1


def test_python_commitment_equals_the_proofs_first_point(diagnosis, diagnostic_bundle, dataset):
    """polycommit: the commitment is keccak256 of the proof's first G1 point (x || y), which
    the off-circuit KZG commitment of the salted row reproduces; no instance carries it."""
    z = load_preprocessor().transform(list(dataset.x_test[0]))
    expected = commit_input(diagnostic_bundle, z, diagnosis.salt)
    assert proof_commitment(diagnosis.proof.proof) == expected == diagnosis.commitment
    assert expected not in diagnosis.proof.instances
    assert len(diagnosis.salt) == KZG_SALT_LIMBS and salt_entropy_bits(KZG_SALT_LIMBS) == 264


def test_the_kzg_commitment_is_unblinded_and_salted(diagnostic_bundle, dataset, tmp_path):
    """Same record and salt: the same first point although the rest of the proof is blinded;
    a second salt: another commitment and the same output."""
    record = list(dataset.x_test[2])
    salt = new_salt(KZG_SALT_LIMBS)
    a = prove_diagnosis(diagnostic_bundle, record, tmp_path / "a", salt=salt)
    b = prove_diagnosis(diagnostic_bundle, record, tmp_path / "b", salt=salt)
    c = prove_diagnosis(diagnostic_bundle, record, tmp_path / "c")
    assert a.proof.proof[:64] == b.proof.proof[:64] and a.proof.proof[64:] != b.proof.proof[64:]
    assert a.commitment == b.commitment != c.commitment
    assert a.proof.instances == b.proof.instances == c.proof.instances


def test_a_salt_of_the_wrong_length_is_refused_for_a_kzg_model(
    diagnostic_bundle, dataset, tmp_path
):
    with pytest.raises(InvalidSalt, match="expected 11 limbs, got 6"):
        prove_diagnosis(diagnostic_bundle, list(dataset.x_test[0]), tmp_path, salt=new_salt())


def test_salt_changes_the_commitment(dataset, diagnostic_bundle):
    z = load_preprocessor().transform(list(dataset.x_test[1]))
    scale = diagnostic_bundle.input_scale
    a, b = (1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 7)
    assert commit(z, a, scale) == commit(z, a, scale)
    assert commit(z, a, scale) != commit(z, b, scale)


def test_salt_limbs_survive_quantization_exactly(diagnostic_bundle):
    """Each limb keeps all 24 bits: it reaches the circuit as limb * 2**scale, exactly."""
    scale = diagnostic_bundle.input_scale
    limbs = [TOP, TOP - 1, 1 << 23, 1, 0, 0xABCDEF]
    felts = [felt_from_hex(f) for f in quantize_row([float(v) for v in limbs], scale)]
    assert felts == [v << scale for v in limbs]
    assert salt_entropy_bits() >= 128


def test_why_limbs_are_24_bits():
    """EZKL feeds inputs as f32: above 2**24 neighbouring integers collide (entropy is lost)."""
    assert ezkl_api.float_to_felt(float(2**24 + 1), 0) == ezkl_api.float_to_felt(float(2**24), 0)
    assert ezkl_api.float_to_felt(float(TOP), 0) != ezkl_api.float_to_felt(float(TOP - 1), 0)


def test_new_salt_is_random_and_well_formed():
    salts = {new_salt() for _ in range(64)}
    assert len(salts) == 64
    for salt in salts:
        assert check_salt(salt) == salt


@pytest.mark.parametrize(
    ("salt", "message"),
    [
        ((1, 2, 3), "expected 6 limbs, got 3"),
        ((1, 2, 3, 4, 5, 1 << 24), "limb 5 = 16777216 is outside"),
        ((1, 2, 3, 4, 5, -1), "limb 5 = -1 is outside"),
        ((1, 2, 3, 4, 5, 1.5), "limb 5 is float"),
    ],
)
def test_bad_salts_are_rejected(salt, message):
    with pytest.raises(InvalidSalt, match=message):
        check_salt(salt)
