"""The bounty's evaluation model is a model package: ``model build`` makes its bundle, the card
says what it takes, and bad input or the wrong bundle gets one line."""

from __future__ import annotations

import json

import pytest
from zkcare_cli import zkcare

from prover.exceptions import InvalidInput, ProofError
from prover.models import bounty_eval as ev
from prover.models.build import check_bundle
from prover.models.card import ModelCard
from prover.zk.circuit import Bundle
from prover.zk.fields import felt_to_hex

CONTEXT = ev.submission_context(31337, "0x" + "11" * 20, 7, "0x" + "22" * 20)


def test_model_build_on_its_data_files_gives_the_same_bundle(
    eval_bundle: Bundle, benchmark, tmp_path
):
    """The CLI a user runs, on the files the package writes, lands on the very same bundle
    (content-keyed: same graph, data, options and settings search)."""
    files = ev.write_data_files(benchmark, tmp_path / "eval")
    done = zkcare("model", "build", *ev.cli_args(files))
    assert done.stdout.strip().splitlines()[-1] == str(eval_bundle.path)
    shown = json.loads(zkcare("model", "show", eval_bundle.path).stdout)
    assert shown["name"] == "bounty_eval"
    assert shown["input"]["feature_names"] == ev.FEATURE_NAMES
    assert shown["output"]["names"] == ev.OUTPUT_NAMES


def test_its_card_holds_the_registry_layout_and_an_exact_count(eval_bundle: Bundle):
    card = ModelCard.of(eval_bundle)
    layout = card.instance_layout
    assert ev.eval_layout(eval_bundle) == (8, 0, 1, 7, 0) == layout.registry_tuple()
    assert layout.scales() == [0] + [ev.context_scale(eval_bundle)] * ev.CONTEXT_LIMBS
    assert card.fidelity.passed and card.fidelity.max_abs_error == 0.0
    assert card.fidelity.tolerance == ev.COUNT_TOLERANCE
    assert card.salt["entropy_bits"] >= 128
    assert card.input.ranges[: ev.PARAMETERS] == [(-ev.WEIGHT_BOUND, ev.WEIGHT_BOUND)] * 31
    assert ev.benchmark_size(eval_bundle) == ev.BENCHMARK_SIZE
    assert check_bundle(eval_bundle) == card  # what `model register eval` insists on


def test_an_evaluation_proof_verifies_with_model_verify(
    eval_bundle: Bundle, reference_weights, benchmark, tmp_path
):
    result = ev.prove_evaluation(eval_bundle, reference_weights, CONTEXT, tmp_path)
    assert result.correct == ev.float_correct(benchmark, reference_weights)
    assert zkcare("model", "verify", eval_bundle.path, result.proof.path).returncode == 0
    data = json.loads(result.proof.path.read_text())
    data["instances"][0][ev.METRIC_INDEX] = felt_to_hex(result.correct + 1)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    assert zkcare("model", "verify", eval_bundle.path, forged, check=False).returncode != 0


def test_weights_outside_the_card_ranges_are_refused_in_one_line(
    eval_bundle: Bundle, reference_weights, tmp_path
):
    params = reference_weights.flat()
    params[3] = 2 * ev.WEIGHT_BOUND
    with pytest.raises(InvalidInput, match=r"weights\[3\] is outside the evaluation circuit") as e:
        ev.prove_evaluation(eval_bundle, params, CONTEXT, tmp_path)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_that_is_not_an_evaluation_circuit_is_refused(
    diagnostic_bundle: Bundle, reference_weights, tmp_path
):
    with pytest.raises(ProofError, match="is not an evaluation circuit"):
        ev.prove_evaluation(diagnostic_bundle, reference_weights, CONTEXT, tmp_path)
