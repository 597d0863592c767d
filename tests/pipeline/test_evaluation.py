"""The bounty evaluation circuit with real proofs: private weights, committed benchmark."""

import numpy as np
import pytest

from prover.exceptions import InvalidInput
from prover.models.bounty_eval import (
    EVAL_SPEC,
    benchmark_commitments,
    export_eval_onnx,
    prove_evaluation,
)
from prover.models.breast_cancer import DIAGNOSTIC_MODEL, diagnostic_weights
from prover.zk import proof as proofs


def _float_correct(onnx_path, benchmark) -> int:
    w, b = diagnostic_weights(onnx_path)
    margins = (benchmark.features @ w + b) * benchmark.signs
    return int(np.sum(margins > 0))


@pytest.fixture(scope="module")
def reference_proof(eval_bundle, benchmark, tmp_path_factory):
    return prove_evaluation(eval_bundle, benchmark, tmp_path_factory.mktemp("eval-proofs"))


def test_parameters_are_hashed_and_inputs_committed(eval_bundle):
    assert EVAL_SPEC.param_visibility == "hashed"
    vis = eval_bundle.manifest["visibility"]
    assert "Hashed" in vis["input"] and "Hashed" in vis["param"]
    assert eval_bundle.manifest["instance_layout"] == ["benchmark", "labels", "weights", "metric"]


def test_reference_model_scores_on_the_benchmark(eval_bundle, benchmark, reference_proof):
    assert proofs.verify(eval_bundle, reference_proof.proof)
    expected = _float_correct(DIAGNOSTIC_MODEL, benchmark)
    assert reference_proof.metric == pytest.approx(expected / benchmark.size)


def test_benchmark_commitments_match_off_circuit(eval_bundle, benchmark, reference_proof):
    features, labels = benchmark_commitments(benchmark, eval_bundle.input_scale)
    assert (reference_proof.benchmark_commitment, reference_proof.labels_commitment) == (
        features,
        labels,
    )


def test_researcher_model_proves_under_the_same_verifying_key(
    eval_bundle, benchmark, researcher_onnx, reference_proof, tmp_path
):
    result = prove_evaluation(eval_bundle, benchmark, tmp_path, model=researcher_onnx)
    assert proofs.verify(eval_bundle, result.proof)
    assert result.weights_commitment != reference_proof.weights_commitment
    assert result.benchmark_commitment == reference_proof.benchmark_commitment
    assert result.metric == pytest.approx(_float_correct(researcher_onnx, benchmark) / 8)
    assert [p.name for p in tmp_path.iterdir()] == [result.proof.path.name]


def test_model_of_another_shape_is_refused(eval_bundle, benchmark, tmp_path):
    wrong = export_eval_onnx(np.zeros(30), 0.0, 4, tmp_path / "wrong.onnx")
    with pytest.raises(InvalidInput, match=r"takes inputs \[\[4, 30\], \[4, 1\]\]"):
        prove_evaluation(eval_bundle, benchmark, tmp_path / "w", model=wrong)


def test_non_finite_weights_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="finite"):
        export_eval_onnx([float("nan")] * 30, 0.0, 8, tmp_path / "x.onnx")
