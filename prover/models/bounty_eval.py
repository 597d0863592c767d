"""The research-bounty evaluation circuit: a private model's accuracy on a committed benchmark.

The circuit takes the benchmark batch ``X`` (``[N, 30]`` standardized held-out patients) and
its labels as signs ``S`` (``[N, 1]``, +1 benign / -1 malignant), both Poseidon-hashed, and a
logistic-regression model whose parameters are **hashed** (private: the proof exposes only a
commitment to them). It outputs the number of correctly classified patients
(``count(sign(X·w + b) == S)``, as fixed-point ``accuracy`` at ``output_scale``).

Public instances, in order: ``[benchmarkCommitment, labelsCommitment, weightsCommitment,
metric]``. Because parameters are witnesses, not fixed columns, every model of this
architecture yields the **same verifying key**: the DAO deploys one verifier and any
researcher can prove with their own weights.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prover.exceptions import EzklError, InvalidInput, ProofError
from prover.models.breast_cancer import NUM_FEATURES, load_dataset, load_preprocessor
from prover.zk import ezkl_api
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, CircuitSpec, ProgressFn, build_bundle
from prover.zk.fields import felt_from_hex

#: Patients in the committed benchmark batch (the first N held-out patients).
BENCHMARK_SIZE = 8
EVAL_SPEC = CircuitSpec(
    name="bounty_eval",
    param_visibility="hashed",
    logrows=14,
    scale_rebase_multiplier=1,
)
#: Instance layout of the evaluation circuit (what the bounty contract is configured with).
BENCHMARK_INDEX, LABELS_INDEX, WEIGHTS_INDEX, METRIC_INDEX = 0, 1, 2, 3


@dataclass(frozen=True)
class Benchmark:
    """A benchmark batch: standardized features and ±1 labels."""

    features: np.ndarray  # [N, 30]
    signs: np.ndarray  # [N]

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    def inputs(self) -> list[list[float]]:
        """EZKL ``input_data``: features then labels, flattened."""
        return [
            [float(v) for v in self.features.ravel()],
            [float(v) for v in self.signs.ravel()],
        ]


def held_out_benchmark(size: int = BENCHMARK_SIZE) -> Benchmark:
    """The first ``size`` held-out patients of the deterministic split."""
    ds = load_dataset()
    pre = load_preprocessor()
    features = np.array([pre.transform(list(r)) for r in ds.x_test[:size]], dtype=np.float32)
    return Benchmark(features, (2 * ds.y_test[:size] - 1).astype(np.float32))


def export_eval_onnx(
    weights: Sequence[float] | np.ndarray, bias: float, size: int, path: Path
) -> Path:
    """Write the evaluation graph with ``weights``/``bias`` as (hashed) parameters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.asarray(weights, dtype=np.float32).reshape(NUM_FEATURES, 1)
    if not np.all(np.isfinite(w)) or not np.isfinite(bias):
        raise InvalidInput("model weights must be finite numbers")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Mul", ["z", "S"], ["margin"]),
        helper.make_node("Greater", ["margin", "zero"], ["correct"]),
        helper.make_node("Cast", ["correct"], ["correct_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["correct_f"], ["accuracy"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "zkcare_bounty_eval",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [size, NUM_FEATURES]),
            helper.make_tensor_value_info("S", TensorProto.FLOAT, [size, 1]),
        ],
        [helper.make_tensor_value_info("accuracy", TensorProto.FLOAT, [])],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array([bias], np.float32), "b"),
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def check_eval_model(model: Path, size: int) -> None:
    """Refuse an ONNX file that is not the evaluation architecture for ``size`` patients."""
    import onnx

    try:
        graph = onnx.load(str(model)).graph
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise InvalidInput(f"{model} is not a readable ONNX model: {exc}") from exc
    shapes = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    expected = [[size, NUM_FEATURES], [size, 1]]
    if shapes != expected:
        raise InvalidInput(
            f"{model} takes inputs {shapes}; the evaluation circuit needs {expected}"
        )


def build_eval_bundle(
    onnx: Path,
    benchmark: Benchmark,
    *,
    out_root: Path | None = None,
    contract_name: str = "BountyEvalVerifier",
    export_verifier_to: Path | None = None,
    srs_file: Path | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Build (or reuse) the evaluation bundle for one model's ONNX file."""
    kwargs: dict[str, Any] = {}
    if export_verifier_to is not None:
        kwargs["export_verifier_to"] = export_verifier_to
    return build_bundle(
        onnx,
        EVAL_SPEC,
        benchmark.inputs(),
        srs_file=srs_file,
        out_root=out_root,
        contract_name=contract_name,
        extra_manifest={
            "instance_layout": ["benchmark", "labels", "weights", "metric"],
            "benchmark_size": benchmark.size,
        },
        progress=progress,
        **kwargs,
    )


def benchmark_commitments(benchmark: Benchmark, input_scale: int) -> tuple[int, int]:
    """Off-circuit Poseidon commitments to the benchmark features and to its labels."""
    out = []
    for data in benchmark.inputs():
        felts = [ezkl_api.float_to_felt(v, input_scale) for v in data]
        out.append(felt_from_hex(ezkl_api.poseidon_hash(felts)))
    return out[0], out[1]


@dataclass(frozen=True)
class EvaluationProof:
    """A proof that a (private) model scores ``metric`` on the benchmark."""

    proof: proofs.Proof
    benchmark_commitment: int
    labels_commitment: int
    weights_commitment: int
    metric_raw: int
    metric: float


def prove_evaluation(
    bundle: Bundle, benchmark: Benchmark, workdir: Path, model: Path | None = None
) -> EvaluationProof:
    """Prove that ``model`` (default: the bundle's reference model) scores on ``benchmark``.

    A researcher passes their own ONNX (from :func:`export_eval_onnx`): it is compiled against
    the bundle's published settings and proved with the bundle's proving key, so the proof
    verifies under the one deployed evaluation verifier while the weights stay private.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(6)
    compiled = bundle.compiled
    if model is not None:
        check_eval_model(model, benchmark.size)
        compiled = workdir / f"eval-model-{tag}.compiled"
        try:
            ezkl_api.compile_circuit(model, compiled, bundle.settings)
        except EzklError as exc:
            raise InvalidInput(f"{model} does not fit the evaluation circuit: {exc}") from exc
    inp = proofs.write_inputs(workdir / f"eval-input-{tag}.json", benchmark.inputs())
    try:
        data = ezkl_api.gen_witness(inp, compiled, workdir / f"eval-witness-{tag}.json")
        if len(data.get("outputs", [[]])[0]) != 1:
            raise ProofError("the evaluation model must output one metric")
        ezkl_api.prove(
            workdir / f"eval-witness-{tag}.json",
            compiled,
            bundle.pk,
            workdir / f"eval-proof-{tag}.json",
            bundle.srs,
        )
        proof = proofs.Proof.load(workdir / f"eval-proof-{tag}.json")
    finally:
        inp.unlink(missing_ok=True)
        (workdir / f"eval-witness-{tag}.json").unlink(missing_ok=True)
        if model is not None:
            compiled.unlink(missing_ok=True)
    inst = proof.instances
    if len(inst) != 4:
        raise ProofError(f"evaluation proof has {len(inst)} instances, expected 4")
    raw = inst[METRIC_INDEX]
    return EvaluationProof(
        proof,
        inst[BENCHMARK_INDEX],
        inst[LABELS_INDEX],
        inst[WEIGHTS_INDEX],
        raw,
        raw / float(1 << bundle.output_scale),
    )
