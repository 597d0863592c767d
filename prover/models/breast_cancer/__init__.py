"""The diagnostic model: logistic regression on the Wisconsin breast-cancer set.

Training is deterministic (fixed seed, fixed stratified split) and scripted:
``python -m prover train`` rewrites ``prover/models/``. Preprocessing (standardization) is an
explicit, versioned step stored next to the ONNX file (``*.preprocess.json``, whose hash is in
every circuit manifest); the circuit proves the model on the standardized features.

The ONNX graph takes ``[1, 30 + SALT_LIMBS]``: the 30 standardized features followed by the
salt limbs of the commitment, which get zero weights. EZKL hashes the whole input row with
Poseidon, so the salt lives inside the same commitment as the patient's features. Its output
is the logit (log-odds of *benign*); a negative logit means the model calls the tumour
malignant.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prover.exceptions import InvalidPatientRecord

NUM_FEATURES = 30
#: Salt limbs appended to the features. EZKL feeds f32 inputs, whose 24-bit mantissa is exact
#: only for integers < 2**24, so each limb carries 24 bits: 6 limbs = 144 bits of entropy.
SALT_LIMBS = 6
SALT_LIMB_BITS = 24
#: Standardized features beyond this magnitude are rejected as implausible (data errors).
MAX_ABS_STANDARDIZED = 64.0

MODELS_DIR = Path(__file__).parent
DIAGNOSTIC_MODEL = MODELS_DIR / "breast_cancer_lr.onnx"
DIAGNOSTIC_PREPROCESS = MODELS_DIR / "breast_cancer_lr.preprocess.json"

SEED = 42
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Preprocessor:
    """Versioned standardization: ``z = (x - mean) / scale`` per feature."""

    version: str
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def load(cls, path: Path = DIAGNOSTIC_PREPROCESS) -> Preprocessor:
        """Read a preprocessing spec written by :func:`train_diagnostic_model`."""
        data = json.loads(path.read_text())
        return cls(
            version=data["version"],
            feature_names=tuple(data["feature_names"]),
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
        )

    def to_json(self) -> str:
        """Canonical JSON (stable bytes, so its hash is stable)."""
        body = {
            "version": self.version,
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    def transform(self, record: Sequence[float]) -> list[float]:
        """Standardize one raw patient record after validating it."""
        values = validate_record(record, len(self.mean))
        z = [(v - m) / s for v, m, s in zip(values, self.mean, self.scale, strict=True)]
        for i, value in enumerate(z):
            if abs(value) > MAX_ABS_STANDARDIZED:
                raise InvalidPatientRecord(
                    f"feature {i} ({self.feature_names[i]}) = {values[i]!r} is "
                    f"{value:+.1f} standard deviations from the training mean"
                )
        return z


def validate_record(record: Sequence[float], expected: int = NUM_FEATURES) -> list[float]:
    """Check a raw record: right length, numbers, finite, non-negative (all 30 are)."""
    if isinstance(record, str | bytes) or not isinstance(record, Sequence):
        raise InvalidPatientRecord(f"expected a list of {expected} numbers")
    if len(record) != expected:
        raise InvalidPatientRecord(f"expected {expected} features, got {len(record)}")
    out: list[float] = []
    for i, value in enumerate(record):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidPatientRecord(f"feature {i} is {type(value).__name__}, not a number")
        if not math.isfinite(value):
            raise InvalidPatientRecord(f"feature {i} is {value!r}, not a finite number")
        if value < 0:
            raise InvalidPatientRecord(f"feature {i} is {value!r}; measurements are >= 0")
        out.append(float(value))
    return out


@dataclass(frozen=True)
class Dataset:
    """The deterministic train/held-out split of the Wisconsin breast-cancer set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]


def load_dataset() -> Dataset:
    """Load the bundled data set (569 patients) and split it (seeded, stratified)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=TEST_FRACTION, random_state=SEED, stratify=data.target
    )
    return Dataset(x_tr, y_tr, x_te, y_te, tuple(str(n) for n in data.feature_names))


@dataclass(frozen=True)
class TrainedModel:
    """What training produced, with held-out accuracy."""

    onnx_path: Path
    preprocess_path: Path
    weights: np.ndarray
    bias: float
    accuracy: float


def export_onnx(weights: np.ndarray, bias: float, path: Path, salt_limbs: int = SALT_LIMBS) -> None:
    """Write the logistic-regression logit as an ONNX Gemm over ``[features | salt]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = weights.shape[0]
    w = np.concatenate([weights.astype(np.float32), np.zeros(salt_limbs, np.float32)])
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "b"], ["logit"])],
        "zkcare_breast_cancer_lr",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n + salt_limbs])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(w.reshape(-1, 1), "W"),
            numpy_helper.from_array(np.array([bias], np.float32), "b"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="zkcare"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def train_diagnostic_model(out_dir: Path = MODELS_DIR, regularization: float = 1.0) -> TrainedModel:
    """Train, evaluate on the held-out split, and export ONNX + preprocessing spec."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ds = load_dataset()
    scaler = StandardScaler().fit(ds.x_train)
    clf = LogisticRegression(C=regularization, max_iter=10_000, random_state=SEED)
    clf.fit(scaler.transform(ds.x_train), ds.y_train)
    accuracy = float(clf.score(scaler.transform(ds.x_test), ds.y_test))
    weights = clf.coef_.ravel().astype(np.float32)
    bias = float(np.float32(clf.intercept_[0]))
    stem = "breast_cancer_lr" if regularization == 1.0 else f"breast_cancer_lr_c{regularization:g}"
    onnx_path = out_dir / f"{stem}.onnx"
    pre_path = out_dir / f"{stem}.preprocess.json"
    export_onnx(weights, bias, onnx_path)
    pre = Preprocessor(
        version="standardize-v1",
        feature_names=ds.feature_names,
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scaler.scale_),
    )
    pre_path.write_text(pre.to_json())
    return TrainedModel(onnx_path, pre_path, weights, bias, accuracy)


def diagnostic_weights(onnx_path: Path = DIAGNOSTIC_MODEL) -> tuple[np.ndarray, float]:
    """The feature weights and bias of a diagnostic ONNX model (salt columns dropped)."""
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    return init["W"].ravel()[:NUM_FEATURES].astype(np.float32), float(init["b"][0])


def float_logits(onnx_path: Path, standardized: np.ndarray) -> np.ndarray:
    """The float model's logits for standardized rows (salt limbs have zero weight)."""
    weights, bias = diagnostic_weights(onnx_path)
    return standardized @ weights[: standardized.shape[1]].astype(np.float64) + bias


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
