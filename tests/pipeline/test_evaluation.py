"""The bounty evaluation circuit with real proofs: private weights, the benchmark in the circuit,
the submission context carried through to the outputs."""

import json

import numpy as np
import pytest

from prover.exceptions import InvalidInput
from prover.models.bounty_eval import (
    BENCHMARK_SIZE,
    INSTANCE_COUNT,
    METRIC_INDEX,
    WEIGHTS_INDEX,
    Benchmark,
    benchmark_info,
    build_eval_bundle,
    context_limbs,
    context_scale,
    float_correct,
    load_benchmark,
    min_correct,
    prove_evaluation,
    submission_context,
    weights_commitment,
    weights_of,
)
from prover.zk import proof as proofs
from prover.zk.fields import felt_to_hex

CONTEXT = submission_context(31337, "0x" + "11" * 20, 1, "0x" + "22" * 20)


@pytest.fixture(scope="module")
def reference_proof(eval_bundle, reference_weights, tmp_path_factory):
    return prove_evaluation(
        eval_bundle, reference_weights, CONTEXT, tmp_path_factory.mktemp("eval-proofs")
    )


def test_the_benchmark_is_all_held_out_patients_inside_the_circuit(eval_bundle, benchmark):
    assert benchmark.size == BENCHMARK_SIZE == 114
    assert benchmark_info(eval_bundle) == (114, benchmark.sha256())
    vis = eval_bundle.manifest["visibility"]
    assert "Hashed" in vis["input"] and "Fixed" in vis["param"]


def test_reference_model_scores_on_the_benchmark(
    eval_bundle, benchmark, reference_weights, reference_proof
):
    assert proofs.verify(eval_bundle, reference_proof.proof)
    assert len(reference_proof.proof.instances) == INSTANCE_COUNT
    # The circuit counts exactly what the float model gets right.
    assert reference_proof.correct == float_correct(benchmark, reference_weights)
    assert reference_proof.correct >= 100
    assert reference_proof.proof.instances[METRIC_INDEX] == reference_proof.correct


def test_weights_commitment_matches_off_circuit(eval_bundle, reference_weights, reference_proof):
    """The one salted commitment covers the parameters, the context and the salt."""
    assert reference_proof.proof.instances[WEIGHTS_INDEX] == weights_commitment(
        eval_bundle, reference_weights, CONTEXT, reference_proof.salt
    )
    other_salt = tuple((limb + 1) % (1 << 24) for limb in reference_proof.salt)
    assert reference_proof.weights_commitment != weights_commitment(
        eval_bundle, reference_weights, CONTEXT, other_salt
    )


def test_context_is_carried_to_the_outputs(eval_bundle, reference_proof):
    scale = context_scale(eval_bundle)
    outputs = list(reference_proof.proof.instances[METRIC_INDEX + 1 :])
    assert outputs == [limb << scale for limb in context_limbs(CONTEXT)]


def test_another_context_gives_another_proof_and_the_same_score(
    eval_bundle, reference_weights, reference_proof, tmp_path
):
    other = submission_context(31337, "0x" + "11" * 20, 2, "0x" + "22" * 20)
    result = prove_evaluation(eval_bundle, reference_weights, other, tmp_path)
    assert result.correct == reference_proof.correct
    a, b = result.proof.instances, reference_proof.proof.instances
    assert a[WEIGHTS_INDEX] != b[WEIGHTS_INDEX]  # the context (and a fresh salt) is committed
    assert a[METRIC_INDEX + 1 :] != b[METRIC_INDEX + 1 :]


def test_the_same_salt_and_context_give_the_same_commitment(
    eval_bundle, reference_weights, reference_proof, tmp_path
):
    again = prove_evaluation(
        eval_bundle, reference_weights, CONTEXT, tmp_path, salt=reference_proof.salt
    )
    assert again.weights_commitment == reference_proof.weights_commitment


def test_a_proof_does_not_verify_with_another_context(eval_bundle, reference_proof, tmp_path):
    """The context outputs are bound by the proof: swapping them in is rejected."""
    data = json.loads(reference_proof.proof.path.read_text())
    limbs = context_limbs(submission_context(1, "0x" + "33" * 20, 9, "0x" + "44" * 20))
    scale = context_scale(eval_bundle)
    forged = list(reference_proof.proof.instances)
    forged[METRIC_INDEX + 1 :] = [limb << scale for limb in limbs]
    data["instances"] = [[felt_to_hex(v) for v in forged]]
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(data))
    assert not proofs.verify(eval_bundle, proofs.Proof.load(path))


def test_researcher_model_proves_under_the_same_verifying_key(
    eval_bundle, benchmark, researcher_onnx, reference_proof, tmp_path
):
    weights = weights_of(researcher_onnx)
    result = prove_evaluation(eval_bundle, researcher_onnx, CONTEXT, tmp_path)
    assert proofs.verify(eval_bundle, result.proof)
    assert result.weights_commitment != reference_proof.weights_commitment
    assert result.correct == float_correct(benchmark, weights)
    assert [p.name for p in tmp_path.iterdir()] == [result.proof.path.name]


def test_a_private_benchmark_file_makes_its_own_circuit(
    tmp_path, reference_weights, benchmark, eval_bundle
):
    rows = benchmark.features[:20]
    labels = ((benchmark.signs[:20] + 1) / 2).astype(int)
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"features": rows.tolist(), "labels": labels.tolist()}))
    private = load_benchmark(path)
    assert private.size == 20
    bundle = build_eval_bundle(private, out_root=tmp_path / "bundles")
    result = prove_evaluation(bundle, reference_weights, CONTEXT, tmp_path / "p")
    assert result.size == 20 and result.correct == float_correct(private, reference_weights)
    assert benchmark_info(bundle)[1] != benchmark.sha256() == benchmark_info(eval_bundle)[1]


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"weights": [1, 2], "bias": 0}', "need 30 weights, got 2"),
        ('{"weights": [NaN' + ", 0" * 29 + '], "bias": 0}', "finite"),
        ('{"bias": 0}', "not a weights file"),
    ],
)
def test_bad_weights_files_are_refused(tmp_path, text, match):
    path = tmp_path / "w.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        weights_of(path)


def test_bad_benchmark_file_is_refused(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"features": [[0.0] * 29], "labels": [1]}))
    with pytest.raises(InvalidInput, match="needs N rows of 30 features"):
        load_benchmark(path)


def test_min_correct_rounds_up():
    assert min_correct(0.95, 114) == 109  # 108.3 -> 109: never lower than asked
    assert min_correct(1.0, 114) == 114
    with pytest.raises(InvalidInput):
        min_correct(0.0, 114)


def test_benchmark_digest_names_its_rows():
    a = Benchmark(np.zeros((2, 30), np.float32), np.ones(2, np.float32))
    b = Benchmark(np.zeros((2, 30), np.float32), -np.ones(2, np.float32))
    assert a.sha256() != b.sha256()
