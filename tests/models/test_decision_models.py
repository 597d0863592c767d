"""Decision models: the payout rule compiled into the circuit, the score kept out of the proof.

Real EZKL builds and proofs of two models the tests train themselves: a regression MLP with a
threshold on its output 0 (negative inputs) and a three-class classifier with an arg-max rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prover.models.build import LoadedModel, prove_record, verify_proof
from prover.models.card import ModelCard
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle
from prover.zk.commitment import (
    KZG_SALT_LIMBS,
    PROOF_COMMITMENT_INDEX,
    commit_input,
    proof_commitment,
)

from .decision_zoo import DecisionZooModel, build, float_scores, score_words, zkcare

pytestmark = pytest.mark.slow

SALT = [float(1000 + k) for k in range(KZG_SALT_LIMBS)]  # any salt: witnesses only


def _cases(request: pytest.FixtureRequest, kind: str) -> tuple[DecisionZooModel, Bundle, str]:
    if kind == "threshold":
        model, threshold = request.getfixturevalue("decision_threshold_model")
        return model, request.getfixturevalue("decision_threshold_bundle"), f"{threshold}"
    model = request.getfixturevalue("decision_argmax_model")
    return model, request.getfixturevalue("decision_argmax_bundle"), "class 2"


def _float_rule(kind: str, threshold: float, scores: np.ndarray) -> np.ndarray:
    if kind == "threshold":
        return (scores[:, 0] >= threshold).astype(int)
    return (np.argmax(scores, axis=1) == 2).astype(int)


def _threshold(request: pytest.FixtureRequest) -> float:
    return float(request.getfixturevalue("decision_threshold_model")[1])


def test_threshold_card_records_the_compiled_rule(
    decision_threshold_model: tuple[DecisionZooModel, float],
    decision_threshold_bundle: Bundle,
) -> None:
    model, threshold = decision_threshold_model
    card = ModelCard.of(decision_threshold_bundle)
    assert card.decision is not None
    assert (card.decision.comparison, card.decision.output, card.decision.threshold) == (
        "at_least",
        0,
        threshold,
    )
    assert card.decision.rule == f"output[0] >= {threshold:.10g}"
    assert card.decision.pays_when == "decision == 1"
    scores = float_scores(model, model.held_out_rows)
    assert card.decision.margin == pytest.approx(np.min(np.abs(scores[:, 0] - threshold)), abs=1e-6)
    layout = card.instance_layout
    # the input commitment is the proof's first point: the decision is the only instance
    assert (layout.count, layout.commitment, layout.output_indexes) == (1, "proof", [0])
    assert layout.output_scale == 0
    assert layout.registry_tuple() == (1, PROOF_COMMITMENT_INDEX, 0, 1, 0)
    assert card.output.names == ["decision"] and card.output.shape == [1, 1]
    fid = card.fidelity
    assert (fid.task, fid.flips, fid.passed, fid.held_out) == ("decision", 0, True, 24)
    decisions = _float_rule("threshold", threshold, scores)
    assert 0 < decisions.sum() < len(decisions)  # held-out records on both sides


def test_argmax_card_records_the_compiled_rule(
    decision_argmax_model: DecisionZooModel, decision_argmax_bundle: Bundle
) -> None:
    card = ModelCard.of(decision_argmax_bundle)
    assert card.decision is not None
    assert (card.decision.comparison, card.decision.output, card.decision.threshold) == (
        "arg_max_is",
        2,
        None,
    )
    scores = float_scores(decision_argmax_model, decision_argmax_model.held_out_rows)
    top = np.sort(scores, axis=1)
    assert card.decision.margin == pytest.approx(np.min(top[:, -1] - top[:, -2]), abs=1e-6)
    assert card.instance_layout.registry_tuple() == (1, PROOF_COMMITMENT_INDEX, 0, 1, 0)
    assert (card.fidelity.task, card.fidelity.flips, card.fidelity.passed) == ("decision", 0, True)
    decisions = _float_rule("argmax", 0.0, scores)
    assert 0 < decisions.sum() < len(decisions)


def test_model_show_prints_the_rule(decision_threshold_bundle: Bundle) -> None:
    done = zkcare("model", "show", decision_threshold_bundle.path)
    card = json.loads(done.stdout)
    assert card["decision"]["comparison"] == "at_least"
    assert card["instance_layout"]["output_indexes"] == [0]
    assert card["instance_layout"]["commitment"] == "proof"
    assert "decision model: pays when output[0] >= " in done.stderr
    assert "public output: the 0/1 decision only" in done.stderr


@pytest.mark.parametrize("kind", ["threshold", "argmax"])
def test_proofs_carry_the_commitment_and_the_decision_only(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    """One record each side of the rule: proved, verified; instances = [0|1], the commitment
    is the proof's first point."""
    model, bundle, _ = _cases(request, kind)
    threshold = _threshold(request) if kind == "threshold" else 0.0
    loaded = LoadedModel.open(bundle)
    scores = float_scores(model, model.held_out_rows)
    want = _float_rule(kind, threshold, scores)
    picks = [int(np.argmax(want == 1)), int(np.argmax(want == 0))]
    for i in picks:
        row = [float(v) for v in model.held_out_rows[i]]
        result = prove_record(loaded, row, tmp_path / f"p{i}")
        path = tmp_path / f"proof-{i}.json"
        path.write_text(result.proof.path.read_text())
        assert verify_proof(bundle, path)
        instances = result.proof.instances
        assert len(instances) == 1
        expected = commit_input(bundle, row, result.salt)
        assert proof_commitment(result.proof.proof) == expected == result.commitment
        assert instances[0] in (0, 1) and instances[0] == want[i], (i, scores[i])
        assert result.outputs == (float(want[i]),)
        leaked = set(instances) & set(score_words(scores[i]))
        assert not leaked, leaked


@pytest.mark.parametrize("kind", ["threshold", "argmax"])
def test_zero_flips_on_every_held_out_record(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    """The circuit's decision equals the float model's rule on all 24 held-out records."""
    model, bundle, _ = _cases(request, kind)
    threshold = _threshold(request) if kind == "threshold" else 0.0
    want = _float_rule(kind, threshold, float_scores(model, model.held_out_rows))
    got = []
    for i, row in enumerate(model.held_out_rows):
        data = proofs.write_inputs(tmp_path / f"in{i}.json", [[*map(float, row), *SALT]])
        witness = proofs.gen_witness(bundle, data, tmp_path / f"w{i}.json")
        assert len(witness.outputs) == 1
        got.append(witness.outputs[0])
    assert got == [int(v) for v in want]


@pytest.mark.parametrize("kind", ["threshold", "argmax"])
def test_two_salts_two_commitments_same_decision(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    model, bundle, _ = _cases(request, kind)
    loaded = LoadedModel.open(bundle)
    row = [float(v) for v in model.held_out_rows[3]]
    limbs = loaded.card.salt["limbs"]
    a = prove_record(loaded, row, tmp_path / "a", salt=[11 + k for k in range(limbs)])
    b = prove_record(loaded, row, tmp_path / "b", salt=[97 + k for k in range(limbs)])
    assert a.commitment != b.commitment
    assert a.proof.instances == b.proof.instances
    assert a.outputs == b.outputs


def test_threshold_at_a_held_out_score_is_still_decided_faithfully(
    decision_threshold_model: tuple[DecisionZooModel, float], decision_zoo_dir: Path
) -> None:
    """The hard case: T is exactly one held-out record's score (margin 0). The search must
    raise the scale until no record flips (it rejects the cheaper unfaithful settings), and
    the card reports the zero margin."""
    model, _ = decision_threshold_model
    scores = float_scores(model, model.held_out_rows)[:, 0]
    edge = int(np.argmin(np.abs(scores - np.median(scores))))
    threshold = float(np.float32(scores[edge]))
    edged = type(model)(
        **{**model.__dict__, "decide_args": ("--decide", f"output[0] >= {threshold!r}")}
    )
    bundle = build(edged, decision_zoo_dir / "edge", "--name", "edge_mlp")
    card = ModelCard.of(bundle)
    assert card.decision is not None and card.decision.threshold == threshold
    assert card.decision.margin == 0.0
    assert (card.fidelity.flips, card.fidelity.passed) == (0, True)
    trials = bundle.manifest["tuning"]["trials"]
    assert any(t["status"] == "unfaithful" and (t["flips"] or 0) > 0 for t in trials)
    w = proofs.gen_witness(
        bundle,
        proofs.write_inputs(
            decision_zoo_dir / "edge-in.json", [[*map(float, model.held_out_rows[edge]), *SALT]]
        ),
        decision_zoo_dir / "edge-w.json",
    )
    assert w.outputs == (1,)  # output[0] >= T holds with equality


@pytest.mark.parametrize(
    "args,message",
    [
        (("--decide", "output[1] >= 0.5"), "output 1 is out of range: the model has 1 output(s)"),
        (("--decide", "score > 1"), "write it as 'output[K] >= T' or 'output[K] <= T'"),
        (("--decide-class", "1"), "an arg-max rule needs a model with at least 2 outputs"),
        (("--decide", "output[0] >= 1", "--decide-class", "0"), "give one of --decide and"),
        (("--decide", "output[0] <= 1", "--task", "regression"), "do not apply to a decision"),
    ],
    ids=["index", "syntax", "argmax-one-output", "both", "task"],
)
def test_bad_rules_are_refused_in_one_line(
    decision_threshold_model: tuple[DecisionZooModel, float],
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    model, _ = decision_threshold_model
    done = zkcare(
        "model",
        "build",
        model.onnx,
        "--calibration",
        model.calibration,
        "--out",
        tmp_path,
        *args,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], lines[-1]
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # nothing built


def test_a_plain_card_has_no_decision_key(
    decision_threshold_model: tuple[DecisionZooModel, float], decision_zoo_dir: Path
) -> None:
    """Without --decide nothing changes: raw outputs public, and no ``decision`` key in the
    manifest's card (so readers that predate decision models accept the bundle)."""
    model, _ = decision_threshold_model
    bundle = build(model, decision_zoo_dir / "plain", decide=False)
    assert "decision" not in bundle.manifest["card"]
    card = ModelCard.of(bundle)
    assert card.decision is None and card.fidelity.task == "regression"
    assert card.instance_layout.output_scale > 0 and card.output.names == ["progression"]
