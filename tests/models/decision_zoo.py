"""Small models the decision tests train and export themselves (deterministic seeds).

A regression MLP on standardized diabetes features (about half the inputs negative) with a
threshold on its output 0, and an iris classifier with three logits for an arg-max rule. Each
comes with the CSV files a model owner hands to ``python -m prover model build``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from zkcare_cli import zkcare

if TYPE_CHECKING:
    from prover.zk.circuit import Bundle

SEED = 11


@dataclass(frozen=True)
class DecisionZooModel:
    """A model, its data files and the float rule's inputs."""

    name: str
    onnx: Path
    calibration: Path
    held_out: Path
    held_out_rows: np.ndarray
    outputs: int
    #: ``model build`` arguments selecting the compiled rule.
    decide_args: tuple[str, ...]


def _write_csv(path: Path, rows: np.ndarray) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        for r in np.atleast_2d(rows):
            w.writerow([repr(float(v)) for v in np.ravel(r)])
    return path


def _save(nodes: list[Any], x: Any, y: Any, inits: dict[str, np.ndarray], path: Path) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        path.stem,
        [x],
        [y],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def float_scores(model: DecisionZooModel, rows: np.ndarray) -> np.ndarray:
    """The float model's outputs (onnxruntime), one flat row per record."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(
        [session.run(None, {name: np.asarray([r], np.float32)})[0].ravel() for r in rows],
        dtype=np.float64,
    )


def make_threshold_mlp(d: Path, n_held: int = 24) -> tuple[DecisionZooModel, float]:
    """Diabetes MLP regression (10 standardized features, 1 output); threshold: the median
    training prediction, so held-out records fall on both sides. Returns the model and T."""
    from onnx import TensorProto, helper
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    tr, te = idx[:-n_held], idx[-n_held:]
    mlp = MLPRegressor(
        hidden_layer_sizes=(8,), activation="relu", max_iter=3000, random_state=SEED
    ).fit(x[tr], y[tr] / 100.0)
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    onnx_path = _save(
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["progression"]),
        ],
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10]),
        helper.make_tensor_value_info("progression", TensorProto.FLOAT, ["batch", 1]),
        {"W1": w1, "b1": b1, "W2": w2, "b2": b2},
        d / "progression_mlp.onnx",
    )
    threshold = round(float(np.median(mlp.predict(x[tr]))), 3)
    model = DecisionZooModel(
        "progression_mlp",
        onnx_path,
        _write_csv(d / "progression_mlp.calibration.csv", x[tr]),
        _write_csv(d / "progression_mlp.held_out.csv", x[te]),
        x[te],
        1,
        ("--decide", f"output[0] >= {threshold}"),
    )
    return model, threshold


def make_argmax_classifier(d: Path, n_held: int = 24, pay_class: int = 2) -> DecisionZooModel:
    """Iris logistic regression: 4 standardized features -> 3 logits; pays for class 2."""
    from onnx import TensorProto, helper
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    tr, te = idx[:-n_held], idx[-n_held:]
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED).fit(x[tr], y[tr])
    onnx_path = _save(
        [helper.make_node("Gemm", ["x", "W", "b"], ["logits"], transB=1)],
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]),
        {"W": clf.coef_, "b": clf.intercept_},
        d / "iris_logits.onnx",
    )
    return DecisionZooModel(
        "iris_logits",
        onnx_path,
        _write_csv(d / "iris_logits.calibration.csv", x[tr]),
        _write_csv(d / "iris_logits.held_out.csv", x[te]),
        x[te],
        3,
        ("--decide-class", str(pay_class)),
    )


def build(model: DecisionZooModel, out: Path, *extra: str, decide: bool = True) -> Bundle:
    """``model build`` (with the model's decision rule unless ``decide`` is false)."""
    from prover.zk.circuit import load_bundle

    args: list[str | Path] = [
        "model",
        "build",
        model.onnx,
        "--calibration",
        model.calibration,
        "--held-out",
        model.held_out,
        "--out",
        out,
        *(model.decide_args if decide else ()),
        *extra,
    ]
    done = zkcare(*args)
    return load_bundle(Path(done.stdout.strip().splitlines()[-1]))


#: Fixed-point scales a score could be encoded at (EZKL's circuits here use 2^-5 .. 2^-24).
SCORE_SCALES = range(5, 25)
#: Encodings smaller than this are too common (counters, flags, indices) to mean a leak.
MIN_WORD = 64


def score_words(scores: np.ndarray, scales: range = SCORE_SCALES) -> dict[int, str]:
    """Every 32-byte word a score could leak as: ``round(v * 2^s)`` (±1 for rounding) at each
    scale, as an int256 (two's complement) and as a BN254 field element (``r - |v|``)."""
    from prover.zk.fields import BN254_R

    words: dict[int, str] = {}
    for k, value in enumerate(np.ravel(scores)):
        for s in scales:
            centre = round(float(value) * 2**s)
            for n in (centre - 1, centre, centre + 1):
                if abs(n) < MIN_WORD:
                    continue
                label = f"score {k} ({float(value):.6g}) at 2^-{s}"
                words[n % 2**256] = label
                words[n % BN254_R] = label
    return words
