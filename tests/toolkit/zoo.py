"""Models the tests make themselves (none of them is built into zkcare).

Each ``make_*`` trains a small model on a data set bundled with scikit-learn (deterministic
seeds), exports it to ONNX with plain operators and writes the files a model owner hands to
``python -m prover model build``: calibration and held-out records (CSV), labels and, where the
model expects it, a preprocessing file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 7


@dataclass(frozen=True)
class ZooModel:
    """A model and its data files."""

    name: str
    onnx: Path
    calibration: Path
    held_out: Path
    labels: Path
    preprocess: Path | None
    held_out_rows: np.ndarray  # raw records
    held_out_labels: np.ndarray
    outputs: int


def _save(model: object, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))  # type: ignore[arg-type]


def _write_csv(path: Path, rows: np.ndarray, header: list[str] | None = None) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        for r in np.atleast_2d(rows):
            w.writerow([repr(float(v)) for v in np.ravel(r)])
    return path


def _graph(
    nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray], name: str
) -> object:
    from onnx import helper, numpy_helper

    g = helper.make_graph(
        nodes,
        name,
        inputs,
        outputs,
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)], producer_name="zkcare-tests"
    )
    m.ir_version = 8
    return m


def _files(
    d: Path, name: str, cal: np.ndarray, held: np.ndarray, labels: np.ndarray
) -> tuple[Path, Path, Path]:
    return (
        _write_csv(d / f"{name}.calibration.csv", cal),
        _write_csv(d / f"{name}.held_out.csv", held),
        _write_csv(d / f"{name}.labels.csv", labels.reshape(-1, 1)),
    )


def make_regression_mlp(d: Path, n_held: int = 40) -> ZooModel:
    """MLP regression on the diabetes set: 10 standardized features (negative values), 1 output."""
    from onnx import TensorProto, helper
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    x, y = load_diabetes(return_X_y=True)
    x = x / x.std(axis=0)  # standardized: mean 0, std 1 (about half the values negative)
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    tr, te = idx[:-n_held], idx[-n_held:]
    mlp = MLPRegressor(
        hidden_layer_sizes=(16,), activation="relu", max_iter=3000, random_state=SEED
    ).fit(x[tr], y[tr])
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    m = _graph(
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["progression"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("progression", TensorProto.FLOAT, ["batch", 1])],
        {"W1": w1, "b1": b1, "W2": w2, "b2": b2},
        "diabetes_mlp",
    )
    onnx_path = d / "diabetes_mlp.onnx"
    _save(m, onnx_path)
    cal, held, lab = _files(d, "diabetes_mlp", x[tr], x[te], y[te])
    return ZooModel("diabetes_mlp", onnx_path, cal, held, lab, None, x[te], y[te], 1)


def make_digits_cnn(d: Path, n_held: int = 60) -> ZooModel:
    """A small CNN on 8×8 digits: conv 3×3 (4 fixed filters) + ReLU + dense head → 10 logits."""
    from onnx import TensorProto, helper
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)  # pixel values 0..16
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    tr, te = idx[:-n_held], idx[-n_held:]
    filters = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    imgs = (x / 16.0).reshape(-1, 8, 8)
    feats = np.zeros((len(x), 4, 6, 6))
    for f in range(4):
        for i in range(6):
            for j in range(6):
                feats[:, f, i, j] = np.sum(
                    imgs[:, i : i + 3, j : j + 3] * filters[f, 0], axis=(1, 2)
                )
    feats = np.maximum(feats, 0).reshape(len(x), -1)
    head = LogisticRegression(C=0.5, max_iter=5000, random_state=SEED).fit(feats[tr], y[tr])
    m = _graph(
        [
            helper.make_node(
                "Conv",
                ["image", "K", "kb"],
                ["c"],
                kernel_shape=[3, 3],
                strides=[1, 1],
                pads=[0, 0, 0, 0],
                dilations=[1, 1],
            ),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1),
        ],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        {"K": filters, "kb": np.zeros(4), "W": head.coef_, "b": head.intercept_},
        "digits_cnn",
    )
    onnx_path = d / "digits_cnn.onnx"
    _save(m, onnx_path)
    pre = d / "digits_cnn.preprocess.json"
    pre.write_text(
        json.dumps(
            {
                "kind": "standardize",
                "version": "pixels-div16-v1",
                "feature_names": [f"px{i}" for i in range(64)],
                "mean": [0.0] * 64,
                "scale": [16.0] * 64,
            }
        )
    )
    cal, held, lab = _files(d, "digits_cnn", x[tr], x[te], y[te])
    return ZooModel("digits_cnn", onnx_path, cal, held, lab, pre, x[te], y[te], 10)


def make_grouped_mlp(d: Path, n_held: int = 50) -> ZooModel:
    """Breast-cancer measurements as a [1, 3, 10] tensor (mean / error / worst × 10) → 2 logits."""
    from onnx import TensorProto, helper
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    tr, te = idx[:-n_held], idx[-n_held:]
    mean, scale = x[tr].mean(axis=0), x[tr].std(axis=0)
    z = (x - mean) / scale
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3000, random_state=SEED).fit(z[tr], y[tr])
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    # two logits [malignant, benign]: the second minus the first is the binary logit
    w2x = np.concatenate([-w2 / 2, w2 / 2], axis=1)
    b2x = np.concatenate([-b2 / 2, b2 / 2])
    m = _graph(
        [
            helper.make_node("Flatten", ["measurements"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["logits"]),
        ],
        [helper.make_tensor_value_info("measurements", TensorProto.FLOAT, [1, 3, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        {"W1": w1, "b1": b1, "W2": w2x, "b2": b2x},
        "grouped_mlp",
    )
    onnx_path = d / "grouped_mlp.onnx"
    _save(m, onnx_path)
    pre = d / "grouped_mlp.preprocess.json"
    pre.write_text(
        json.dumps(
            {
                "kind": "standardize",
                "version": "grouped-standardize-v1",
                "feature_names": [f"m{i}" for i in range(30)],
                "mean": mean.tolist(),
                "scale": scale.tolist(),
            }
        )
    )
    cal, held, lab = _files(d, "grouped_mlp", x[tr], x[te], y[te])
    return ZooModel("grouped_mlp", onnx_path, cal, held, lab, pre, x[te], y[te], 2)


ZOO = {
    "diabetes_mlp": make_regression_mlp,
    "digits_cnn": make_digits_cnn,
    "grouped_mlp": make_grouped_mlp,
}
