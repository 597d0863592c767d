"""The research-bounty evaluation model: a private model's accuracy on a committed benchmark.

A model package like any user's: :func:`export_eval_onnx` writes the evaluation graph with the
benchmark (``[N, 30]`` standardized patients and their labels as signs, +1 benign / -1
malignant) **baked in as constants**, :func:`write_data_files` its calibration records and
ranges, and :func:`build_eval_bundle` calls :func:`prover.models.build.build_model` — the path
behind ``model build`` — which salts the graph, tunes the circuit and writes the model card.
The same bundle comes out of the CLI (:func:`cli_args`)::

    python -m prover model build benchmark-<sha>.onnx --calibration calibration.csv \
        --ranges ranges.json --name bounty_eval --task regression --tolerance 0.5 \
        --output-names correct,context_0,...,context_5 --output-meaning '...' \
        --commit hashed

So the registered verifier *is* the committed benchmark: the registry records the evaluation
ONNX's sha256 (which holds the rows) and its verifying key.

The model's one input is a record of 37 values: a researcher's 31 logistic-regression
parameters (30 weights, then the bias) followed by the submission *context*, six 24-bit limbs
that the graph passes through to its outputs and that the bounty contract compares with
``submissionContext(bountyId, researcher)`` — a proof pays one bounty, on one contract and
chain, to one researcher. ``model build`` appends its salt limbs and Poseidon-hashes the whole
(parameters, context, salt): every researcher proves under the same key while the weights stay
private, and the commitment is hiding (a fresh salt per proof).

Public instances, in order: ``[weightsCommitment, metric, context_0 … context_5]``
(``metric`` = the number of patients classified correctly, ``count(sign(X·w + b) == S)``, an
exact integer at scale 0; a mean would lose it to fixed-point rounding; the context limbs at
the input scale). Keeping the benchmark out of the instances keeps the circuit small.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from prover.exceptions import InvalidInput, ProofError
from prover.models.breast_cancer import NUM_FEATURES, load_dataset, load_preprocessor
from prover.paths import ARTIFACTS, VERIFIERS_DIR
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, ProgressFn
from prover.zk.commitment import Salt, commit

NAME = "bounty_eval"
#: Patients in the committed benchmark: every held-out patient of the deterministic split.
BENCHMARK_SIZE = 114
#: Context limbs the circuit passes through (must equal ResearchBounty.CONTEXT_LIMBS / _BITS).
CONTEXT_LIMBS, CONTEXT_LIMB_BITS = 6, 24
CONTEXT_BITS = CONTEXT_LIMBS * CONTEXT_LIMB_BITS
PARAMETERS = NUM_FEATURES + 1
#: Values per record: the parameters, then the context limbs (the salt is added by the build).
RECORD_WIDTH = PARAMETERS + CONTEXT_LIMBS
#: Instance layout of the evaluation circuit (read from a real proof by ``model build``).
WEIGHTS_INDEX, METRIC_INDEX = 0, 1
INSTANCE_COUNT = 2 + CONTEXT_LIMBS
#: Registry layout: (instanceCount, inputIndex, outputIndex, outputCount, outputScale) minus scale.
OUTPUT_COUNT = 1 + CONTEXT_LIMBS
#: Allowed weights and bias: |p| <= this (the card's ranges; the circuit is sized for them).
WEIGHT_BOUND = 8.0
#: A count is exact when the circuit's is within this of the float model's.
COUNT_TOLERANCE = 0.5
FEATURE_NAMES = [*(f"w{i}" for i in range(NUM_FEATURES)), "b"] + [
    f"context_{i}" for i in range(CONTEXT_LIMBS)
]
OUTPUT_NAMES = ["correct"] + [f"context_{i}" for i in range(CONTEXT_LIMBS)]
OUTPUT_MEANING = (
    "correct: how many benchmark patients sign(X.w + b) classifies right (exact, scale 0); "
    "context_0..5: the submission context limbs, passed through"
)
#: ONNX metadata keys naming the benchmark baked into the graph.
META_SIZE, META_SHA256 = "zkcare.benchmark_size", "zkcare.benchmark_sha256"
#: Seed of the calibration records (weight vectors and contexts).
SEED = 20240601


@dataclass(frozen=True)
class Benchmark:
    """A benchmark batch: standardized features and ±1 labels."""

    features: np.ndarray  # [N, 30]
    signs: np.ndarray  # [N]

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    def sha256(self) -> str:
        """Digest of the rows and labels (float32, C order): names the benchmark."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.features, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.signs, np.float32).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Weights:
    """A researcher's logistic-regression parameters (the circuit's private input)."""

    w: np.ndarray  # [30]
    b: float

    def flat(self) -> list[float]:
        return [float(v) for v in self.w] + [float(self.b)]


def held_out_benchmark(size: int = BENCHMARK_SIZE) -> Benchmark:
    """The first ``size`` held-out patients of the deterministic split (default: all 114)."""
    ds = load_dataset()
    if not 1 <= size <= len(ds.x_test):
        raise InvalidInput(f"benchmark size must be within 1..{len(ds.x_test)}, got {size}")
    pre = load_preprocessor()
    features = np.array([pre.transform(list(r)) for r in ds.x_test[:size]], dtype=np.float32)
    return Benchmark(features, (2 * ds.y_test[:size] - 1).astype(np.float32))


def load_benchmark(path: Path) -> Benchmark:
    """A private benchmark file: ``{"features": [[30 standardized values], …], "labels": [0|1…]}``.

    Labels use the dataset's convention (1 benign, 0 malignant).
    """
    try:
        data = json.loads(path.read_text())
        features = np.asarray(data["features"], dtype=np.float32)
        labels = np.asarray(data["labels"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a benchmark file ({exc})") from exc
    if features.ndim != 2 or features.shape[1] != NUM_FEATURES or len(labels) != len(features):
        raise InvalidInput(
            f"{path}: needs N rows of {NUM_FEATURES} features and N labels, "
            f"got {features.shape} and {labels.shape}"
        )
    if not np.all(np.isin(labels, (0, 1))) or not np.all(np.isfinite(features)):
        raise InvalidInput(f"{path}: labels must be 0 or 1 and features finite")
    return Benchmark(features, (2 * labels - 1).astype(np.float32))


def weights_of(source: Path | Sequence[float] | Weights) -> Weights:
    """A researcher's parameters from a JSON file, an ONNX model, or 31 numbers (30 w, then b).

    JSON: ``{"weights": [30 numbers], "bias": number}``. ONNX: a logistic-regression graph
    whose initializers are one 30-element weight tensor and one 1-element bias.
    """
    if isinstance(source, Weights):
        return _checked(source.w, source.b, "weights")
    if not isinstance(source, Path):
        flat = np.asarray(list(source), dtype=np.float64)
        if flat.shape != (PARAMETERS,):
            raise InvalidInput(f"need {PARAMETERS} parameters (30 weights, bias), got {flat.size}")
        return _checked(flat[:NUM_FEATURES], float(flat[NUM_FEATURES]), "parameters")
    if source.suffix.lower() == ".json":
        try:
            data = json.loads(source.read_text())
            return _checked(np.asarray(data["weights"], float), float(data["bias"]), str(source))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{source}: not a weights file ({exc})") from exc
    import onnx
    from onnx import numpy_helper

    try:
        init = [numpy_helper.to_array(t) for t in onnx.load(str(source)).graph.initializer]
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise InvalidInput(f"{source} is not a readable ONNX model: {exc}") from exc
    ws = [a for a in init if a.size == NUM_FEATURES]
    bs = [a for a in init if a.size == 1]
    if len(ws) != 1 or len(bs) != 1:
        raise InvalidInput(
            f"{source}: expected one {NUM_FEATURES}-element weight tensor and one bias, "
            f"found tensors of sizes {[a.size for a in init]}"
        )
    return _checked(ws[0].ravel().astype(float), float(bs[0].ravel()[0]), str(source))


def _checked(w: np.ndarray, b: float, what: str) -> Weights:
    w = np.asarray(w, dtype=np.float32).ravel()
    if w.shape != (NUM_FEATURES,):
        raise InvalidInput(f"{what}: need {NUM_FEATURES} weights, got {w.size}")
    if not (np.all(np.isfinite(w)) and np.isfinite(b)):
        raise InvalidInput(f"{what}: model weights must be finite numbers")
    return Weights(w, float(b))


def export_eval_onnx(benchmark: Benchmark, path: Path) -> Path:
    """Write the evaluation graph with ``benchmark`` baked in as constants (and named in the
    ONNX metadata: size and sha256)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = benchmark.size
    i64 = np.int64
    consts: dict[str, np.ndarray] = {
        "X": np.ascontiguousarray(benchmark.features, np.float32),
        "S": np.ascontiguousarray(benchmark.signs, np.float32).reshape(n, 1),
        "zero": np.zeros(1, np.float32),
        "w_start": np.array([0], i64),
        "w_end": np.array([NUM_FEATURES], i64),
        "b_end": np.array([PARAMETERS], i64),
        "c_end": np.array([RECORD_WIDTH], i64),
        "axis": np.array([1], i64),
        "w_shape": np.array([NUM_FEATURES, 1], i64),
    }
    nodes = [
        helper.make_node("Slice", ["record", "w_start", "w_end", "axis"], ["w_row"]),
        helper.make_node("Reshape", ["w_row", "w_shape"], ["W"]),
        helper.make_node("Slice", ["record", "w_end", "b_end", "axis"], ["b"]),
        helper.make_node("Slice", ["record", "b_end", "c_end", "axis"], ["C"]),
        helper.make_node("MatMul", ["X", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Mul", ["z", "S"], ["margin"]),
        helper.make_node("Greater", ["margin", "zero"], ["correct"]),
        helper.make_node("Cast", ["correct"], ["correct_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["correct_f"], ["correct_count"], keepdims=0),
        helper.make_node("Identity", ["C"], ["context"]),
    ]
    graph = helper.make_graph(
        nodes,
        "zkcare_bounty_eval",
        [helper.make_tensor_value_info("record", TensorProto.FLOAT, [1, RECORD_WIDTH])],
        [
            helper.make_tensor_value_info("correct_count", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("context", TensorProto.FLOAT, [1, CONTEXT_LIMBS]),
        ],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {META_SIZE: str(benchmark.size), META_SHA256: benchmark.sha256()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def _reference_vectors() -> list[Weights]:
    """Parameter vectors the circuit is calibrated and checked on: zkcare's diagnostic model,
    logistic regressions with other regularizations, and scaled / noisy variants."""
    from sklearn.linear_model import LogisticRegression

    from prover.models.breast_cancer import SEED as SPLIT_SEED
    from prover.models.breast_cancer import diagnostic_weights

    w, b = diagnostic_weights()
    out = [Weights(np.asarray(w, np.float32), float(b))]
    ds = load_dataset()
    pre = load_preprocessor()
    x = np.array([pre.transform(list(r)) for r in ds.x_train])
    for c in (0.01, 0.05, 0.3, 3.0):
        clf = LogisticRegression(C=c, max_iter=10_000, random_state=SPLIT_SEED).fit(x, ds.y_train)
        out.append(Weights(clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0])))
    rng = np.random.default_rng(SEED)
    base = out[0]
    for scale in (0.5, 2.0):
        out.append(Weights((base.w * scale).astype(np.float32), base.b * scale))
    for _ in range(3):
        noisy = base.w + rng.normal(0, 0.3, NUM_FEATURES)
        out.append(Weights(noisy.astype(np.float32), float(base.b + rng.normal(0, 0.3))))
    out.append(Weights(-base.w, -base.b))  # a model that gets most patients wrong
    return [_checked(np.clip(v.w, -WEIGHT_BOUND, WEIGHT_BOUND), v.b, "reference") for v in out]


def calibration_records() -> np.ndarray:
    """``[n, 37]`` records: each reference vector with a random context (and the extremes)."""
    rng = np.random.default_rng(SEED + 1)
    vectors = _reference_vectors()
    limbs = rng.integers(0, 1 << CONTEXT_LIMB_BITS, (len(vectors), CONTEXT_LIMBS))
    limbs[0], limbs[-1] = 0, (1 << CONTEXT_LIMB_BITS) - 1
    return np.array([v.flat() + [float(x) for x in c] for v, c in zip(vectors, limbs, strict=True)])


def ranges() -> list[tuple[float, float]]:
    """The card's allowed ranges: weights and bias within ±WEIGHT_BOUND, context limbs 24-bit."""
    bound = (-WEIGHT_BOUND, WEIGHT_BOUND)
    return [bound] * PARAMETERS + [(0.0, float((1 << CONTEXT_LIMB_BITS) - 1))] * CONTEXT_LIMBS


def write_data_files(benchmark: Benchmark, directory: Path) -> dict[str, Path]:
    """The files ``model build`` takes for this benchmark: the ONNX, calibration CSV (with a
    header naming the 37 values) and the ranges JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx = export_eval_onnx(benchmark, directory / f"benchmark-{benchmark.sha256()[:16]}.onnx")
    calibration = directory / "calibration.csv"
    with calibration.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FEATURE_NAMES)
        writer.writerows([repr(float(v)) for v in row] for row in calibration_records())
    ranges_file = directory / "ranges.json"
    ranges_file.write_text(json.dumps([list(r) for r in ranges()]))
    return {"onnx": onnx, "calibration": calibration, "ranges": ranges_file}


def cli_args(files: dict[str, Path]) -> list[str]:
    """The ``model build`` arguments that build exactly :func:`build_eval_bundle`'s bundle."""
    return [
        str(files["onnx"]),
        "--calibration",
        str(files["calibration"]),
        "--ranges",
        str(files["ranges"]),
        "--name",
        NAME,
        "--task",
        "regression",
        "--tolerance",
        str(COUNT_TOLERANCE),
        "--output-names",
        ",".join(OUTPUT_NAMES),
        "--output-meaning",
        OUTPUT_MEANING,
        "--commit",
        "hashed",
    ]


def build_eval_bundle(
    benchmark: Benchmark | None = None,
    *,
    out_root: Path | None = None,
    export_verifier_to: Path | None = VERIFIERS_DIR,
    srs_file: Path | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Build (or reuse) the evaluation bundle for ``benchmark`` (default: the 114 held-out)
    through :func:`prover.models.build.build_model`, the path behind ``model build``."""
    from prover.models.build import BuildOptions, build_model
    from prover.models.card import check_ranges
    from prover.models.data import load_rows

    benchmark = benchmark or held_out_benchmark()
    files = write_data_files(benchmark, ARTIFACTS / "models" / NAME / benchmark.sha256()[:16])
    records, header = load_rows(files["calibration"], RECORD_WIDTH)
    bundle = build_model(
        files["onnx"],
        records,
        options=BuildOptions(
            name=NAME,
            # Hashed: a researcher commits to the Poseidon weights commitment before proving.
            input_visibility="hashed",
            task="regression",
            tolerance=COUNT_TOLERANCE,
            ranges=check_ranges(
                json.loads(files["ranges"].read_text()), RECORD_WIDTH, str(files["ranges"])
            ),
            output_meaning=OUTPUT_MEANING,
            output_names=list(OUTPUT_NAMES),
        ),
        feature_names=header,
        held_out_source=f"{len(records)} reference parameter vectors with random contexts",
        srs_file=srs_file,
        out_root=out_root,
        export_verifier_to=export_verifier_to,
        progress=progress,
    )
    check_eval_bundle(bundle)
    return bundle


def check_eval_bundle(bundle: Bundle) -> None:
    """Refuse a bundle that is not an evaluation circuit: its layout and output scales."""
    from prover.models.card import ModelCard

    layout = ModelCard.of(bundle).instance_layout
    scales = layout.scales()
    want = (INSTANCE_COUNT, WEIGHTS_INDEX, METRIC_INDEX, OUTPUT_COUNT)
    if layout.registry_tuple()[:4] != want or scales[0] != 0 or len(set(scales[1:])) != 1:
        raise ProofError(
            f"{bundle.path} is not an evaluation circuit (layout {layout.registry_tuple()}, "
            f"output scales {scales}; want {want} with the count at scale 0)"
        )
    benchmark_info(bundle)


def benchmark_info(bundle: Bundle) -> tuple[int, str]:
    """The size and sha256 of the benchmark baked into an evaluation bundle's graph."""
    import onnx

    try:
        model = onnx.load(str(bundle.file("source.onnx")), load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props}
        return int(meta[META_SIZE]), meta[META_SHA256]
    except (KeyError, ValueError, OSError) as exc:
        raise ProofError(f"{bundle.path}: its graph names no benchmark ({exc})") from exc


def benchmark_size(bundle: Bundle) -> int:
    """Patients in an evaluation bundle's benchmark."""
    return benchmark_info(bundle)[0]


def eval_layout(bundle: Bundle) -> tuple[int, int, int, int, int]:
    """The registry's instance layout for an evaluation bundle (from its model card)."""
    from prover.models.card import ModelCard

    return ModelCard.of(bundle).instance_layout.registry_tuple()


def context_scale(bundle: Bundle) -> int:
    """Fixed-point scale of the context outputs (the bounty's ``contextScale``)."""
    return int(bundle.manifest["scales"]["output"][1])


def submission_context(chain_id: int, contract: str, bounty_id: int, researcher: str) -> int:
    """``ResearchBounty.submissionContext``: 144 bits naming chain, contract, bounty, researcher."""
    digest = keccak(
        encode(
            ["uint256", "address", "uint256", "address"],
            [chain_id, to_checksum_address(contract), bounty_id, to_checksum_address(researcher)],
        )
    )
    return int.from_bytes(digest, "big") >> (256 - CONTEXT_BITS)


def context_limbs(context: int) -> list[int]:
    """The context's 24-bit limbs, least significant first."""
    if not 0 <= context < 1 << CONTEXT_BITS:
        raise InvalidInput(f"context must be a {CONTEXT_BITS}-bit number")
    mask = (1 << CONTEXT_LIMB_BITS) - 1
    return [(context >> (CONTEXT_LIMB_BITS * i)) & mask for i in range(CONTEXT_LIMBS)]


def check_parameters(bundle: Bundle, weights: Weights) -> Weights:
    """Refuse parameters outside the evaluation card's ranges (one line naming the parameter,
    never its value): the circuit is sized for them, beyond them a count may be wrong or the
    witness overflow."""
    from prover.models.card import ModelCard

    ranges = ModelCard.of(bundle).input.ranges
    labels = [f"weights[{i}]" for i in range(NUM_FEATURES)] + ["bias"]
    for label, value, (low, high) in zip(labels, weights.flat(), ranges, strict=False):
        if not low <= value <= high:
            raise InvalidInput(
                f"{label} is outside the evaluation circuit's range [{low:g}, {high:g}]"
            )
    return weights


def evaluation_record(weights: Weights, context: int) -> list[float]:
    """The model's input record: the 31 parameters, then the context limbs."""
    return weights.flat() + [float(v) for v in context_limbs(context)]


def weights_commitment(bundle: Bundle, weights: Weights, context: int, salt: Salt) -> int:
    """Off-circuit salted Poseidon commitment (equals the proof's weights instance)."""
    return commit(evaluation_record(weights, context), salt, bundle.input_scale)


@dataclass(frozen=True)
class EvaluationProof:
    """A proof that private weights classify ``correct`` of the benchmark's patients right."""

    proof: proofs.Proof
    weights_commitment: int
    correct: int
    size: int
    context: int
    salt: Salt = ()

    @property
    def accuracy(self) -> float:
        return self.correct / self.size


def prove_evaluation(
    bundle: Bundle,
    weights: Weights | Path | Sequence[float],
    context: int,
    workdir: Path,
    *,
    salt: Sequence[int] | None = None,
) -> EvaluationProof:
    """Prove the accuracy of ``weights`` on the bundle's benchmark, bound to ``context``:
    :func:`prover.models.build.prove_record` on the record (parameters, context limbs)."""
    from prover.models.build import prove_record

    limbs = context_limbs(context)
    check_eval_bundle(bundle)
    params = check_parameters(bundle, weights_of(weights))
    result = prove_record(bundle, evaluation_record(params, context), workdir, salt=salt)
    inst = result.proof.instances
    if len(inst) != INSTANCE_COUNT:
        raise ProofError(f"evaluation proof has {len(inst)} instances, expected {INSTANCE_COUNT}")
    scale = context_scale(bundle)
    if [v >> scale for v in inst[METRIC_INDEX + 1 :]] != limbs or result.outputs[1:] != tuple(
        float(v) for v in limbs
    ):
        raise ProofError("the evaluation proof does not carry the requested context")
    correct = inst[METRIC_INDEX]
    if correct != round(result.outputs[0]):
        raise ProofError(f"the evaluation proof's metric {correct} is not a count at scale 0")
    return EvaluationProof(
        result.proof, result.commitment, correct, benchmark_size(bundle), context, result.salt
    )


def float_correct(benchmark: Benchmark, weights: Weights) -> int:
    """How many patients the float model classifies right (what the circuit counts, unquantized)."""
    margins = (benchmark.features.astype(np.float64) @ weights.w + weights.b) * benchmark.signs
    return int(np.sum(margins > 0))


def min_correct(min_accuracy: float, size: int) -> int:
    """The bounty's ``minMetric`` for an accuracy threshold: at least this many patients right."""
    if not 0 < min_accuracy <= 1:
        raise InvalidInput(f"minimum accuracy must be within (0, 1], got {min_accuracy}")
    return math.ceil(round(min_accuracy * size, 9))
