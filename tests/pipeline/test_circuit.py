import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prover.diagnosis import DIAGNOSTIC_SPEC, build_diagnostic_bundle, calibration_rows
from prover.exceptions import BundleIncomplete, UnsafeVisibility
from prover.models.breast_cancer import DIAGNOSTIC_MODEL, Preprocessor, float_logits, sha256_file
from prover.zk import proof as proofs
from prover.zk.circuit import CircuitSpec, build_bundle, load_bundle


def test_public_patient_inputs_are_refused(tmp_path: Path) -> None:
    spec = replace(DIAGNOSTIC_SPEC, input_visibility="public")
    with pytest.raises(UnsafeVisibility, match="refusing patient input visibility 'public'"):
        build_bundle(DIAGNOSTIC_MODEL, spec, [[0.0] * 36], out_root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-built


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("input_visibility", "private", "patient input"),
        ("param_visibility", "private", "model parameter"),
        ("param_visibility", "public", "model parameter"),
        ("output_visibility", "hashed", "model output"),
    ],
)
def test_other_unsafe_visibilities_are_refused(field: str, value: str, what: str) -> None:
    with pytest.raises(UnsafeVisibility, match=f"refusing {what} visibility"):
        replace(DIAGNOSTIC_SPEC, **{field: value}).check()


def test_public_inputs_need_the_loud_override() -> None:
    replace(DIAGNOSTIC_SPEC, input_visibility="public", allow_public_patient_inputs=True).check()


def test_manifest_records_hashes_and_parameters(diagnostic_bundle) -> None:
    m = diagnostic_bundle.manifest
    for key, name in [
        ("onnx", "model.onnx"),
        ("settings", "settings.json"),
        ("vk", "vk.key"),
        ("verifier", "Verifier.sol"),
        ("calibration", "calibration.json"),
    ]:
        assert m["sha256"][key] == sha256_file(diagnostic_bundle.path / name)
    assert m["sha256"]["onnx"] == sha256_file(DIAGNOSTIC_MODEL)
    assert m["ezkl_version"] == "23.0.5"
    assert m["solc_version"] == "0.8.28"
    assert m["logrows"] == 11
    assert m["scales"] == {"input": [7], "param": 7, "output": [14]}
    assert "Hashed" in m["visibility"]["input"] and m["visibility"]["param"] == "Fixed"
    assert m["visibility"]["output"] == "Public"
    assert m["srs"]["dev"] is True and "NOT FOR PRODUCTION" in m["srs"]["label"]
    assert m["preprocessing"]["sha256"] == sha256_file(
        Path(__file__).parents[2] / "prover/models/breast_cancer/breast_cancer_lr.preprocess.json"
    )
    source = diagnostic_bundle.verifier_source.read_text()
    assert "GENERATED FILE - DO NOT EDIT" in source and "EZKL 23.0.5" in source
    assert m["sha256"]["vk"] in source and m["sha256"]["onnx"] in source
    assert "contract BreastCancerLrVerifier" in source


def test_bundle_is_reused_until_its_inputs_change(diagnostic_bundle, tmp_path: Path) -> None:
    pk_mtime = diagnostic_bundle.pk.stat().st_mtime_ns
    again = build_diagnostic_bundle()
    assert again.path == diagnostic_bundle.path
    assert again.pk.stat().st_mtime_ns == pk_mtime
    changed = build_diagnostic_bundle(
        replace(DIAGNOSTIC_SPEC, param_scale=8),
        out_root=tmp_path,
        export_verifier_to=tmp_path / "v",
    )
    assert changed.path.parent == tmp_path and changed.manifest["scales"]["param"] == 8


def test_a_damaged_bundle_is_rebuilt(tmp_path: Path) -> None:
    kwargs = {"out_root": tmp_path, "export_verifier_to": tmp_path / "v"}
    first = build_diagnostic_bundle(**kwargs)
    first.pk.unlink()
    with pytest.raises(BundleIncomplete, match="pk.key is missing"):
        load_bundle(first.path)
    second = build_diagnostic_bundle(**kwargs)
    assert second.path == first.path and second.pk.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building")]


def test_ceremony_srs_is_recorded_as_such(diagnostic_bundle, tmp_path: Path) -> None:
    ceremony = tmp_path / "ceremony-k11.srs"
    shutil.copyfile(diagnostic_bundle.srs, ceremony)
    bundle = build_diagnostic_bundle(
        srs_file=ceremony, out_root=tmp_path / "b", export_verifier_to=tmp_path / "v"
    )
    assert bundle.manifest["srs"]["dev"] is False
    assert bundle.manifest["srs"]["sha256"] == sha256_file(ceremony)
    assert "NOT FOR PRODUCTION" not in bundle.verifier_source.read_text()


def test_no_held_out_diagnosis_flips_under_quantization(diagnostic_bundle, dataset, tmp_path):
    pre = Preprocessor.load()
    rows = [pre.transform(list(r)) for r in dataset.x_test]
    floats = float_logits(DIAGNOSTIC_MODEL, np.array(rows))
    flips = 0
    for i, z in enumerate(rows):
        path = proofs.write_input(tmp_path / "in.json", [z + [float((1 << 24) - 1)] * 6])
        witness = proofs.gen_witness(diagnostic_bundle, path, tmp_path / "w.json")
        quantized = witness.outputs[0]
        from prover.zk.fields import fixed_to_float

        q = fixed_to_float(quantized, diagnostic_bundle.output_scale)
        assert abs(q - floats[i]) < 0.1
        flips += (q > 0) != (floats[i] > 0)
    assert flips == 0


def test_calibration_rows_are_recorded(diagnostic_bundle) -> None:
    data = json.loads((diagnostic_bundle.path / "calibration.json").read_text())
    assert len(data["input_data"][0]) == 36 * len(calibration_rows(Preprocessor.load()))


def test_spec_defaults_are_explicit() -> None:
    args = CircuitSpec(name="x").run_args()
    assert args.input_visibility.startswith("hashed") and args.logrows == 11
