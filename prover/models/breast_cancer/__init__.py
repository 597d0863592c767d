"""The diagnostic model: logistic regression on the Wisconsin breast-cancer set.

Training is deterministic (fixed seed, fixed stratified split) and scripted:
``python -m prover train`` rewrites ``prover/models/``. Preprocessing (standardization) is an
explicit, versioned step stored next to the ONNX file (``*.preprocess.json``, whose hash is in
every circuit manifest); the circuit proves the model on the standardized features.

The ONNX graph is a plain ``Gemm`` over ``[1, 30]`` standardized features with one output,
the logit (log-odds of *benign*); a negative logit means the model calls the tumour malignant.
It is a model package like any user's: :func:`build_diagnostic_bundle` writes its data files
and calls :func:`prover.models.build.build_model`, the path behind ``model build``, which salts
the graph, tunes the circuit and writes the model card; :func:`prove_diagnosis` is
:func:`prover.models.build.prove_record`.

The built-in product is a *decision* model: :func:`build_decision_bundle` compiles "pay if
malignant" (:data:`PAY_IF_MALIGNANT`, ``output[0] <= 0``) into the circuit (``model build
--decide``), so its proofs' only public output is the 0/1 decision and the chain never sees a
logit. :func:`build_diagnostic_bundle` without a rule is the plain bundle (public logit), kept
for the toolkit's tests and benchmarks and as the privacy tests' contrast.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prover.models.preprocess import Preprocessor
from prover.paths import ARTIFACTS, VERIFIERS_DIR, partial_path
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, ProgressFn
from prover.zk.decision import DecisionRule
from prover.zk.hashing import sha256_file as sha256_file  # re-exported for callers
from prover.zk.tuning import Choice

NUM_FEATURES = 30
NAME = "breast_cancer_lr"
#: The decision bundle's name (its verifier is ``BreastCancerLrDecisionVerifier``).
DECISION_NAME = f"{NAME}_decision"
OUTPUT_MEANING = "logit of P(benign); < 0 means the model calls it malignant"
#: The built-in product's rule, compiled into the decision bundle: the logit of P(benign) is
#: ``<= 0``, i.e. the model calls the tumour malignant (``payout_rule(pay_if="malignant")``).
PAY_IF_MALIGNANT = DecisionRule("at_most", 0, 0.0)

MODELS_DIR = Path(__file__).parent
DIAGNOSTIC_MODEL = MODELS_DIR / "breast_cancer_lr.onnx"
DIAGNOSTIC_PREPROCESS = MODELS_DIR / "breast_cancer_lr.preprocess.json"

SEED = 42
TEST_FRACTION = 0.2


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


def export_onnx(weights: np.ndarray, bias: float, path: Path) -> None:
    """Write the logistic-regression logit as a plain ONNX Gemm over the 30 features.

    Nothing zkcare-specific is in the graph: the toolkit salts it like any user's model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = weights.shape[0]
    w = weights.astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "b"], ["logit"])],
        "zkcare_breast_cancer_lr",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n])],
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
    pre_path.write_text(
        json.dumps(
            {
                "version": "standardize-v1",
                "feature_names": list(ds.feature_names),
                "mean": [float(v) for v in scaler.mean_],
                "scale": [float(v) for v in scaler.scale_],
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    return TrainedModel(onnx_path, pre_path, weights, bias, accuracy)


def diagnostic_weights(onnx_path: Path = DIAGNOSTIC_MODEL) -> tuple[np.ndarray, float]:
    """The feature weights and bias of a diagnostic ONNX model."""
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    return init["W"].ravel()[:NUM_FEATURES].astype(np.float32), float(init["b"][0])


def float_logits(onnx_path: Path, standardized: np.ndarray) -> np.ndarray:
    """The float model's logits for standardized rows."""
    weights, bias = diagnostic_weights(onnx_path)
    return standardized @ weights[: standardized.shape[1]].astype(np.float64) + bias


# ------------------------------------------------------------------------ the model package


def write_data_files(directory: Path) -> dict[str, Path]:
    """The files a model owner would hand to ``model build``: CSV records and labels."""
    ds = load_dataset()
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "calibration": (ds.x_train, list(ds.feature_names)),
        "held_out": (ds.x_test, list(ds.feature_names)),
        "labels": (ds.y_test.reshape(-1, 1), ["benign"]),
    }
    out = {}
    for key, (rows, header) in files.items():
        path = directory / f"{key}.csv"
        tmp = partial_path(path)
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows([repr(float(v)) for v in row] for row in rows)
        tmp.replace(path)
        out[key] = path
    return out


def build_diagnostic_bundle(
    *,
    onnx: Path = DIAGNOSTIC_MODEL,
    preprocess: Path = DIAGNOSTIC_PREPROCESS,
    srs_file: Path | None = None,
    out_root: Path | None = None,
    export_verifier_to: Path | None = VERIFIERS_DIR,
    choice: Choice | None = None,
    name: str = NAME,
    progress: ProgressFn | None = None,
    decision: DecisionRule | None = None,
) -> Bundle:
    """Build or reuse the diagnostic bundle through the public path (``model build``).

    Without ``decision`` it is the plain bundle, whose public output is the logit; with one
    (``model build --decide``) the rule runs in the circuit and its only output is 0/1.
    """
    from prover.models.build import BuildOptions, build_model
    from prover.models.data import load_labels, load_rows

    files = write_data_files(ARTIFACTS / "models" / NAME)
    width = Preprocessor.load(preprocess).width
    calibration, header = load_rows(files["calibration"], width)
    held_out, _ = load_rows(files["held_out"], width)
    labels = load_labels(files["labels"], len(held_out))
    return build_model(
        onnx,
        calibration,
        held_out=held_out,
        labels=labels,
        preprocess=preprocess,
        options=BuildOptions(
            name=name,
            task=None if decision is not None else "classifier",
            output_meaning=OUTPUT_MEANING,
            choice=choice or Choice(),
            decision=decision,
        ),
        feature_names=header,
        held_out_source="breast-cancer held-out split (114 patients)",
        srs_file=srs_file,
        out_root=out_root,
        export_verifier_to=export_verifier_to,
        progress=progress,
    )


def build_decision_bundle(
    *,
    srs_file: Path | None = None,
    out_root: Path | None = None,
    export_verifier_to: Path | None = VERIFIERS_DIR,
    progress: ProgressFn | None = None,
) -> Bundle:
    """The built-in product's bundle: "pay if malignant" (:data:`PAY_IF_MALIGNANT`) compiled
    into the circuit, whose only public output is the decision (what ``deploy all``, the
    demo and the dev relay register)."""
    return build_diagnostic_bundle(
        srs_file=srs_file,
        out_root=out_root,
        export_verifier_to=export_verifier_to,
        name=DECISION_NAME,
        progress=progress,
        decision=PAY_IF_MALIGNANT,
    )


@dataclass(frozen=True)
class DiagnosisProof:
    """A proved diagnosis. ``salt`` stays with the hospital; only the proof is shared."""

    proof: proofs.Proof
    commitment: int
    logit: float
    salt: tuple[int, ...]

    @property
    def malignant(self) -> bool:
        """The model's call: a negative logit means malignant."""
        return self.logit < 0


def prove_diagnosis(
    bundle: Bundle, record: Sequence[float], workdir: Path, *, salt: Sequence[int] | None = None
) -> DiagnosisProof:
    """Prove the model's output on a raw record (:func:`prover.models.build.prove_record`)."""
    from prover.models.build import prove_record

    result = prove_record(bundle, record, workdir, salt=salt)
    return DiagnosisProof(result.proof, result.commitment, result.outputs[0], result.salt)


def load_preprocessor() -> Preprocessor:
    """The built-in model's preprocessing."""
    return Preprocessor.load(DIAGNOSTIC_PREPROCESS)
