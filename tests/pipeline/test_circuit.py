import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prover.exceptions import BundleIncomplete, UnsafeVisibility
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    build_diagnostic_bundle,
    float_logits,
    load_preprocessor,
    sha256_file,
)
from prover.models.build import SCREEN_ROWS
from prover.models.card import ModelCard
from prover.models.preprocess import Preprocessor
from prover.zk import proof as proofs
from prover.zk.circuit import CircuitSpec, build_bundle, load_bundle
from prover.zk.commitment import KZG_SALT_LIMBS
from prover.zk.tuning import Choice

DIAGNOSTIC_SPEC = CircuitSpec(name="breast_cancer_lr")


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
    # the proved graph is the salted wrapper of the committed ONNX, kept beside it
    assert m["sha256"]["onnx"] != sha256_file(DIAGNOSTIC_MODEL)
    assert sha256_file(diagnostic_bundle.path / "source.onnx") == sha256_file(DIAGNOSTIC_MODEL)
    assert m["ezkl_version"] == "23.0.5"
    assert m["solc_version"] == "0.8.28"
    chosen = m["tuning"]["chosen"]
    assert m["logrows"] == chosen["logrows"] <= 11
    assert m["scales"]["input"] == [chosen["input_scale"]]
    assert m["scales"]["param"] == chosen["param_scale"]
    # the salted input is KZG-committed in the proof (polycommit), the weights fixed in the key
    assert m["visibility"]["input"] == "KZGCommit" and m["visibility"]["param"] == "Fixed"
    assert m["spec"]["input_visibility"] == "polycommit"
    assert m["visibility"]["output"] == "Public"
    assert m["srs"]["dev"] is True and "NOT FOR PRODUCTION" in m["srs"]["label"]
    card = ModelCard.of(diagnostic_bundle)
    assert card.preprocessing.sha256 == sha256_file(diagnostic_bundle.path / "preprocess.json")
    assert Preprocessor.load(diagnostic_bundle.path / "preprocess.json") == Preprocessor.load(
        DIAGNOSTIC_PREPROCESS
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
        choice=Choice(param_scale=8), out_root=tmp_path, export_verifier_to=tmp_path / "v"
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
    pre = load_preprocessor()
    rows = [pre.transform(list(r)) for r in dataset.x_test]
    floats = float_logits(DIAGNOSTIC_MODEL, np.array(rows))
    card = ModelCard.of(diagnostic_bundle)
    flips, worst = 0, 0.0
    for i, z in enumerate(rows):
        path = proofs.write_input(
            tmp_path / "in.json", [z + [float((1 << 24) - 1)] * KZG_SALT_LIMBS]
        )
        witness = proofs.gen_witness(diagnostic_bundle, path, tmp_path / "w.json")
        from prover.zk.fields import fixed_to_float

        q = fixed_to_float(witness.outputs[0], diagnostic_bundle.output_scale)
        worst = max(worst, abs(q - floats[i]))
        flips += (q >= 0) != (floats[i] >= 0)
    assert flips == 0 == card.fidelity.flips and card.fidelity.held_out == 114
    assert worst == pytest.approx(card.fidelity.max_abs_error, abs=1e-5) and worst < 0.5


def test_calibration_rows_are_recorded(diagnostic_bundle) -> None:
    data = json.loads((diagnostic_bundle.path / "calibration.json").read_text())
    # the screened rows: SCREEN_ROWS training records + the all-low and all-high extremes
    assert len(data["input_data"][0]) == (30 + KZG_SALT_LIMBS) * (SCREEN_ROWS + 2)


def test_spec_defaults_are_explicit() -> None:
    args = CircuitSpec(name="x").run_args()
    assert args.input_visibility.startswith("hashed") and args.logrows == 11
