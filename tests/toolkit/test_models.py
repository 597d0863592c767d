"""Unseen models through the public path: build → prove → verify, the card, every error line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from prover.exceptions import FidelityCheckFailed, InvalidSalt
from prover.models.build import LoadedModel, check_bundle, prove_record
from prover.models.card import ModelCard
from prover.zk import proof as proofs
from prover.zk.circuit import CircuitSpec, build_bundle, load_bundle
from prover.zk.commitment import proof_commitment
from prover.zk.fields import felt_from_hex, felt_to_hex
from prover.zk.salting import salt_graph

from .conftest import build_args, zkcare
from .zoo import ZooModel

pytestmark = pytest.mark.slow


def _one_line(done) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-1500:]
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["diabetes_mlp", "digits_cnn", "grouped_mlp"])
def test_build_prove_verify_through_the_cli(name, zoo, zoo_bundles, tmp_path: Path) -> None:
    m: ZooModel = zoo[name]
    bundle = zoo_bundles[name]
    card = ModelCard.of(bundle)
    # the card: shapes, layout checked against a real proof, fidelity on the held-out data
    assert card.output_count == m.outputs
    # polycommit: the outputs are the instances; the commitment is the proof's first point
    assert card.instance_layout.count == m.outputs and card.instance_layout.commitment == "proof"
    assert card.fidelity.passed and card.fidelity.held_out == len(m.held_out_rows)
    assert bundle.manifest["tuning"]["chosen"]["logrows"] == bundle.logrows
    if name == "diabetes_mlp":
        assert card.fidelity.task == "regression" and card.fidelity.tolerance > 0
        assert any(low < 0 for low, _ in card.input.ranges)  # negatives allowed by the card
    else:
        assert card.fidelity.task == "classifier" and card.fidelity.flips == 0
    record = tmp_path / "record.json"
    record.write_text(json.dumps([list(map(float, m.held_out_rows[0]))]))
    proof_file = tmp_path / "proof.json"
    zkcare("model", "prove", bundle.path, "--input", record, "--out", proof_file)
    data = json.loads(proof_file.read_text())
    assert len([v for g in data["instances"] for v in g]) == card.instance_layout.count
    assert zkcare("model", "verify", bundle.path, proof_file).stdout.strip() == "valid"
    first = card.instance_layout.output_indexes[0]
    data["instances"][0][first] = felt_to_hex(felt_from_hex(data["instances"][0][first]) + 1)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    line = _one_line(zkcare("model", "verify", bundle.path, tampered, check=False))
    assert "INVALID proof" in line
    shown = zkcare("model", "show", bundle.path).stdout
    assert card.name in shown and "instance_layout" in shown


def test_quantized_outputs_follow_the_float_model(zoo, zoo_bundles, tmp_path: Path) -> None:
    m = zoo["digits_cnn"]
    loaded = LoadedModel.open(zoo_bundles["digits_cnn"])
    agree = 0
    for row, label in zip(m.held_out_rows[:3], m.held_out_labels[:3], strict=True):
        result = prove_record(loaded, list(row), tmp_path)
        assert proofs.verify(loaded.bundle, result.proof)
        agree += int(np.argmax(result.outputs) == label)
    assert agree >= 2  # the CNN is a real classifier, not noise


def test_same_record_two_salts_two_commitments_same_output(zoo, zoo_bundles, tmp_path) -> None:
    loaded = LoadedModel.open(zoo_bundles["diabetes_mlp"])
    record = list(zoo["diabetes_mlp"].held_out_rows[1])
    assert min(record) < 0  # a standardized record: negative inputs go through
    a = prove_record(loaded, record, tmp_path, salt=list(range(1, 12)))
    b = prove_record(loaded, record, tmp_path, salt=[(1 << 24) - 1] * 11)
    assert a.commitment != b.commitment
    assert a.commitment == proof_commitment(a.proof.proof)
    assert a.outputs == b.outputs
    assert a.proof.instances == b.proof.instances
    with pytest.raises(InvalidSalt, match="expected 11 limbs, got 1"):
        prove_record(loaded, record, tmp_path, salt=[7])


def test_register_refuses_a_bundle_whose_layout_differs_from_its_proof(zoo_bundles, tmp_path):
    src = zoo_bundles["grouped_mlp"]
    check_bundle(src)
    copy = tmp_path / src.path.name
    shutil.copytree(src.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["card"]["instance_layout"]["count"] = 1  # the CNN story: a wrong count registered
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FidelityCheckFailed, match="layout says 1 instances but its proof has 2"):
        check_bundle(load_bundle(copy))
    manifest["card"]["instance_layout"]["count"] = 2
    manifest["card"]["instance_layout"]["commitment"] = "instance"  # a hashed circuit's layout
    manifest["card"]["instance_layout"]["commitment_index"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FidelityCheckFailed, match="reads the commitment from the instance"):
        check_bundle(load_bundle(copy))
    manifest["card"]["instance_layout"]["commitment"] = "proof"
    manifest["card"]["instance_layout"]["commitment_index"] = 0xFFFF
    manifest["card"]["fidelity"]["passed"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FidelityCheckFailed, match="fidelity check failed.*--unsafe-skip-bundle"):
        check_bundle(load_bundle(copy))


def test_an_unsalted_uncarded_bundle_is_refused(zoo, tmp_path) -> None:
    """A bundle made without the toolkit's salting (no card) cannot be registered."""
    m = zoo["grouped_mlp"]  # static input shape: EZKL takes the raw graph as it is
    bundle = build_bundle(
        m.onnx,
        CircuitSpec(name="raw_mlp", logrows=12),
        [[0.0] * 30],
        out_root=tmp_path,
        export_verifier_to=None,
    )
    with pytest.raises(FidelityCheckFailed, match="has no model card"):
        check_bundle(bundle)


def test_salt_never_enters_the_computation(zoo, tmp_path) -> None:
    import onnxruntime as ort

    m = zoo["digits_cnn"]
    salted = salt_graph(m.onnx, tmp_path / "s.onnx")
    assert salted.inputs[0].shape == (1, 1, 8, 8)
    x = np.random.default_rng(0).uniform(0, 1, 64).astype(np.float32)
    plain = ort.InferenceSession(str(m.onnx)).run(None, {"image": x.reshape(1, 1, 8, 8)})[0]
    sess = ort.InferenceSession(str(salted.path))
    for limbs in ([0] * 6, [(1 << 24) - 1] * 6):
        row = np.concatenate([x, np.array(limbs, np.float32)]).reshape(1, 70)
        assert np.array_equal(sess.run(None, {"zkcare_input_0": row})[0], plain)


# ------------------------------------------------------------------------ one-line failures


def _model(tmp_path: Path, name: str, nodes, inputs, outputs, inits) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        outputs,
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def test_error_lines(zoo, zoo_dir: Path, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    mlp, cnn = zoo["diabetes_mlp"], zoo["digits_cnn"]
    f = TensorProto.FLOAT
    # too large for the settings tried
    args = build_args(cnn, tmp_path / "b") + ["--max-logrows", "10"]
    line = _one_line(zkcare(*args, check=False))
    assert "too large for every setting tried" in line and "--max-logrows" in line
    # an operator EZKL does not support
    odd = _model(
        tmp_path,
        "odd",
        [helper.make_node("LpNormalization", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", f, [1, 10])],
        [helper.make_tensor_value_info("y", f, [1, 10])],
        {},
    )
    line = _one_line(zkcare("model", "build", odd, "--calibration", mlp.calibration, check=False))
    assert "does not support the ONNX operator LpNormalization" in line
    # a symbolic dimension other than the batch
    seq = _model(
        tmp_path,
        "seq",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", f, [1, "steps"])],
        [helper.make_tensor_value_info("y", f, [1, "steps"])],
        {},
    )
    line = _one_line(zkcare("model", "build", seq, "--calibration", mlp.calibration, check=False))
    assert "symbolic dimension 'steps' at axis 1" in line
    # two inputs
    two = _model(
        tmp_path,
        "two",
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [
            helper.make_tensor_value_info("a", f, [1, 5]),
            helper.make_tensor_value_info("b", f, [1, 5]),
        ],
        [helper.make_tensor_value_info("y", f, [1, 5])],
        {},
    )
    line = _one_line(zkcare("model", "build", two, "--calibration", mlp.calibration, check=False))
    assert "2 inputs" in line
    # calibration records of the wrong width
    line = _one_line(
        zkcare("model", "build", mlp.onnx, "--calibration", cnn.calibration, check=False)
    )
    assert "records have 64 values; the model takes 10" in line
    # not an ONNX file
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    line = _one_line(zkcare("model", "build", junk, "--calibration", mlp.calibration, check=False))
    assert "not a readable ONNX file" in line


def test_prove_error_lines(zoo, zoo_bundles, tmp_path: Path) -> None:
    bundle = zoo_bundles["digits_cnn"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(",".join(["1"] * 10) + "\n")
    out = tmp_path / "p.json"
    line = _one_line(
        zkcare("model", "prove", bundle.path, "--input", wrong, "--out", out, check=False)
    )
    assert "records have 10 values; the model takes 64" in line
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"input_data": [[1000.0] * 64]}))
    line = _one_line(
        zkcare("model", "prove", bundle.path, "--input", big, "--out", out, check=False)
    )
    assert "model digits_cnn: features[0] (px0) is outside the allowed range" in line
    assert not out.exists()
