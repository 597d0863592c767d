import json
import logging
from pathlib import Path

import pytest

from prover.exceptions import InvalidPatientRecord, ProofError
from prover.models.breast_cancer import prove_diagnosis
from prover.zk import ezkl_api
from prover.zk import proof as proofs
from prover.zk.fields import felt_to_hex


def _tampered(
    proof: proofs.Proof,
    tmp_path: Path,
    *,
    byte: int | None = None,
    instance: tuple[int, int] | None = None,
) -> proofs.Proof:
    data = json.loads(proof.path.read_text())
    if byte is not None:
        raw = bytearray(proof.proof)
        raw[byte] ^= 0x01
        data["hex_proof"] = "0x" + raw.hex()
        data["proof"] = list(raw)
    if instance is not None:
        index, value = instance
        data["instances"][0][index] = felt_to_hex(value)
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(data))
    return proofs.Proof.load(out)


def test_proof_verifies_locally(diagnostic_bundle, diagnosis) -> None:
    assert proofs.verify(diagnostic_bundle, diagnosis.proof)
    assert diagnosis.malignant and diagnosis.logit == pytest.approx(
        -16.65, abs=0.2
    )  # card: max error 0.199
    assert len(diagnosis.proof.instances) == 1  # the output; the commitment is in the proof


def test_tampered_proof_fails_local_verification(diagnostic_bundle, diagnosis, tmp_path) -> None:
    bad = _tampered(diagnosis.proof, tmp_path, byte=100)
    assert proofs.verify(diagnostic_bundle, bad) is False


def test_changed_output_fails_local_verification(diagnostic_bundle, diagnosis, tmp_path) -> None:
    bad = _tampered(diagnosis.proof, tmp_path, instance=(0, 5))
    assert proofs.verify(diagnostic_bundle, bad) is False


def test_calldata_matches_ezkl_encoding(diagnosis, tmp_path) -> None:
    ours = proofs.evm_calldata(diagnosis.proof)
    theirs = ezkl_api.encode_evm_calldata(diagnosis.proof.path, tmp_path / "calldata.bin")
    assert ours[:4] == bytes.fromhex("1e8e1e13")  # verifyProof(bytes,uint256[])
    # EZKL pads its encoding with one trailing zero word; the ABI content is identical.
    assert theirs[: len(ours)] == ours and set(theirs[len(ours) :]) <= {0}


def test_a_benign_patient_is_proved_benign(diagnostic_bundle, dataset, tmp_path) -> None:
    index = next(i for i, y in enumerate(dataset.y_test) if y == 1)
    result = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[index]), tmp_path)
    assert result.logit > 0 and not result.malignant
    assert proofs.verify(diagnostic_bundle, result.proof)


def test_raw_inputs_do_not_outlive_proving(diagnostic_bundle, dataset, tmp_path) -> None:
    prove_diagnosis(diagnostic_bundle, list(dataset.x_test[2]), tmp_path)
    leftovers = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert leftovers == ["proof"]


def test_debug_logging_never_reaches_ezkls_witness_dumps(
    diagnostic_bundle, dataset, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # an operator turns on debug logging for everything
    result = prove_diagnosis(diagnostic_bundle, list(dataset.x_test[3]), tmp_path)
    assert proofs.verify(diagnostic_bundle, result.proof)
    rust = [r for r in caplog.records if r.name.split(".")[0] in ezkl_api.RUST_LOGGERS]
    assert [r for r in rust if r.levelno < logging.WARNING] == []
    assert "witness" not in caplog.text
    assert format(result.commitment, "064x") not in caplog.text.replace("0x", "")


def test_bad_record_is_rejected_before_proving(diagnostic_bundle, tmp_path) -> None:
    with pytest.raises(
        InvalidPatientRecord, match="model breast_cancer_lr takes 30 features, got 3"
    ):
        prove_diagnosis(diagnostic_bundle, [1.0, 2.0, 3.0], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_not_a_proof_file(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ProofError, match="is not an EZKL proof file"):
        proofs.Proof.load(path)
