"""The research-bounty evaluation circuit: a private model's accuracy on a committed benchmark.

The benchmark (``[N, 30]`` standardized patients and their labels as signs, +1 benign / -1
malignant) is **baked into the circuit** as constants, so the registered verifier *is* the
committed benchmark: the registry records the evaluation ONNX's sha256 (which holds the rows)
and its verifying key. A researcher's logistic-regression parameters are the circuit's input,
Poseidon-hashed (the proof exposes only a commitment to them), so every researcher proves under
the same key while the weights stay private. Its second input is the submission *context*: six
24-bit limbs that the circuit passes through to its outputs and that the bounty contract
compares with ``submissionContext(bountyId, researcher)`` — a proof pays one bounty, on one
contract and chain, to one researcher.

Public instances, in order: ``[weightsCommitment, contextHash, metric, context_0 … context_5]``
(``metric`` = the number of patients classified correctly, ``count(sign(X·w + b) == S)``, an
exact integer; a mean would lose it to fixed-point rounding).
Keeping the benchmark out of the instances keeps the circuit small: all 114 held-out patients
fit in ``2^13`` rows, where Poseidon-hashing them as an input would need ``2^18``.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from prover.exceptions import EzklError, InvalidInput, ProofError
from prover.models.breast_cancer import NUM_FEATURES, load_dataset, load_preprocessor
from prover.paths import ARTIFACTS
from prover.zk import ezkl_api
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, CircuitSpec, ProgressFn, build_bundle
from prover.zk.fields import felt_from_hex

#: Patients in the committed benchmark: every held-out patient of the deterministic split.
BENCHMARK_SIZE = 114
EVAL_SPEC = CircuitSpec(
    name="bounty_eval",
    input_visibility="hashed",
    param_visibility="fixed",
    input_scale=10,
    param_scale=7,
    logrows=13,
    scale_rebase_multiplier=1,
)
#: Context limbs the circuit passes through (must equal ResearchBounty.CONTEXT_LIMBS / _BITS).
CONTEXT_LIMBS, CONTEXT_LIMB_BITS = 6, 24
CONTEXT_BITS = CONTEXT_LIMBS * CONTEXT_LIMB_BITS
#: Instance layout of the evaluation circuit.
WEIGHTS_INDEX, CONTEXT_HASH_INDEX, METRIC_INDEX = 0, 1, 2
INSTANCE_COUNT = 3 + CONTEXT_LIMBS
#: Registry layout: (instanceCount, inputIndex, outputIndex, outputCount, outputScale) minus scale.
OUTPUT_COUNT = 1 + CONTEXT_LIMBS
PARAMETERS = NUM_FEATURES + 1


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
    """Write the evaluation graph with ``benchmark`` baked in as constants."""
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
        "axis": np.array([1], i64),
        "w_shape": np.array([NUM_FEATURES, 1], i64),
    }
    nodes = [
        helper.make_node("Slice", ["P", "w_start", "w_end", "axis"], ["w_row"]),
        helper.make_node("Reshape", ["w_row", "w_shape"], ["W"]),
        helper.make_node("Slice", ["P", "w_end", "b_end", "axis"], ["b"]),
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
        [
            helper.make_tensor_value_info("P", TensorProto.FLOAT, [1, PARAMETERS]),
            helper.make_tensor_value_info("C", TensorProto.FLOAT, [1, CONTEXT_LIMBS]),
        ],
        [
            helper.make_tensor_value_info("correct_count", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("context", TensorProto.FLOAT, [1, CONTEXT_LIMBS]),
        ],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def build_eval_bundle(
    benchmark: Benchmark | None = None,
    *,
    reference: Weights | None = None,
    out_root: Path | None = None,
    contract_name: str = "BountyEvalVerifier",
    export_verifier_to: Path | None = None,
    srs_file: Path | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Build (or reuse) the evaluation bundle for ``benchmark`` (default: the 114 held-out)."""
    from prover.models.breast_cancer import diagnostic_weights

    benchmark = benchmark or held_out_benchmark()
    if reference is None:
        w, b = diagnostic_weights()
        reference = Weights(np.asarray(w, np.float32), b)
    onnx = export_eval_onnx(
        benchmark, ARTIFACTS / "eval" / f"benchmark-{benchmark.sha256()[:16]}.onnx"
    )
    kwargs: dict[str, Any] = {}
    if export_verifier_to is not None:
        kwargs["export_verifier_to"] = export_verifier_to
    bundle = build_bundle(
        onnx,
        EVAL_SPEC,
        [reference.flat(), [0.0] * CONTEXT_LIMBS],
        srs_file=srs_file,
        out_root=out_root,
        contract_name=contract_name,
        extra_manifest={
            "instance_layout": ["weights", "context_hash", "metric"]
            + [f"context_{i}" for i in range(CONTEXT_LIMBS)],
            "benchmark_size": benchmark.size,
            "benchmark_sha256": benchmark.sha256(),
        },
        progress=progress,
        **kwargs,
    )
    scales = bundle.manifest["scales"]["output"]
    if len(scales) != 2 or scales[0] != 0 or scales[1] != bundle.input_scale:
        raise ProofError(f"evaluation circuit has unexpected output scales {scales}")
    return bundle


def eval_layout(bundle: Bundle) -> tuple[int, int, int, int, int]:
    """The registry's instance layout for an evaluation bundle."""
    return (INSTANCE_COUNT, WEIGHTS_INDEX, METRIC_INDEX, OUTPUT_COUNT, bundle.output_scale)


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


def weights_commitment(bundle: Bundle, weights: Weights) -> int:
    """Off-circuit Poseidon commitment to ``weights`` (equals the proof's weights instance)."""
    felts = [ezkl_api.float_to_felt(v, bundle.input_scale) for v in weights.flat()]
    return felt_from_hex(ezkl_api.poseidon_hash(felts))


@dataclass(frozen=True)
class EvaluationProof:
    """A proof that private weights classify ``correct`` of the benchmark's patients right."""

    proof: proofs.Proof
    weights_commitment: int
    correct: int
    size: int
    context: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.size


def prove_evaluation(
    bundle: Bundle, weights: Weights | Path | Sequence[float], context: int, workdir: Path
) -> EvaluationProof:
    """Prove the accuracy of ``weights`` on the bundle's benchmark, bound to ``context``."""
    params = weights_of(weights)
    limbs = context_limbs(context)
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(6)
    inp = proofs.write_inputs(
        workdir / f"eval-input-{tag}.json", [params.flat(), [float(v) for v in limbs]]
    )
    witness = workdir / f"eval-witness-{tag}.json"
    out = workdir / f"eval-proof-{tag}.json"
    try:
        ezkl_api.gen_witness(inp, bundle.compiled, witness)
        ezkl_api.prove(witness, bundle.compiled, bundle.pk, out, bundle.srs)
        proof = proofs.Proof.load(out)
    except EzklError as exc:
        raise ProofError(f"evaluation proof failed: {exc}") from exc
    finally:
        inp.unlink(missing_ok=True)
        witness.unlink(missing_ok=True)
    inst = proof.instances
    if len(inst) != INSTANCE_COUNT:
        raise ProofError(f"evaluation proof has {len(inst)} instances, expected {INSTANCE_COUNT}")
    scale = context_scale(bundle)
    if [v >> scale for v in inst[METRIC_INDEX + 1 :]] != limbs:
        raise ProofError("the evaluation proof does not carry the requested context")
    size = int(bundle.manifest["benchmark_size"])
    return EvaluationProof(proof, inst[WEIGHTS_INDEX], inst[METRIC_INDEX], size, context)


def float_correct(benchmark: Benchmark, weights: Weights) -> int:
    """How many patients the float model classifies right (what the circuit counts, unquantized)."""
    margins = (benchmark.features.astype(np.float64) @ weights.w + weights.b) * benchmark.signs
    return int(np.sum(margins > 0))


def min_correct(min_accuracy: float, size: int) -> int:
    """The bounty's ``minMetric`` for an accuracy threshold: at least this many patients right."""
    if not 0 < min_accuracy <= 1:
        raise InvalidInput(f"minimum accuracy must be within (0, 1], got {min_accuracy}")
    return math.ceil(round(min_accuracy * size, 9))
