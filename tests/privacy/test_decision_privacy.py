"""The chain learns whether a claim pays, never the model's score.

Decision bundles (``model build --decide``) are registered, insured and claimed on anvil with
real proofs; then every transaction's calldata, every event log and every storage slot the runs
wrote are scanned for the claimed records' scores in any fixed-point encoding (as int256 and as
BN254 field words, scales 2^-5..2^-24, ±1 for rounding), the circuit's raw quantized outputs,
and their float bytes. The same scan over the plain bundle's run finds the score, so the scan
can fail.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from models.decision_zoo import score_words

from prover import operations as ops
from prover.exceptions import InvalidInput
from prover.models.build import LoadedModel
from prover.zk.fields import BN254_R

from .conftest import PrivacyRun
from .scan import Scan, scan_chain

pytestmark = pytest.mark.slow

E18 = 10**18


def _scan(run: PrivacyRun, chain: Any, *, raw: bool = True) -> Scan:
    words = score_words(run.scores)
    for value in run.raw if raw else ():  # the plain circuit's outputs on the same records
        words[value] = "raw quantized output"
    d = run.deployment
    contracts = {str(c.address): c for c in (d.registry, d.settlement, d.bounty)}
    return scan_chain(chain.provider, run.first_block, run.last_block, words, run.scores, contracts)


@pytest.mark.parametrize("kind", ["threshold", "argmax"])
def test_decision_claims_settle_one_paid_one_denied(
    privacy_runs: dict[str, PrivacyRun], kind: str
) -> None:
    run = privacy_runs[kind]
    settlement = run.deployment.settlement
    paid, denied = run.receipts
    [event] = paid.decode_logs(settlement.ClaimPaid)
    assert set(event.event_arguments) == {"claimId", "policyId", "holder", "amount"}
    assert event.amount == E18
    assert not list(paid.decode_logs(settlement.ClaimDenied))
    [event] = denied.decode_logs(settlement.ClaimDenied)
    assert set(event.event_arguments) == {"claimId", "policyId"}
    assert not list(denied.decode_logs(settlement.ClaimPaid))
    assert [p.proof.instances for p in run.proofs] == [(1,), (0,)]  # the decision only
    product = run.deployment.product(run.product_id)
    assert product.rule == ops.DECISION_RULE
    view = run.deployment.model(run.model)
    compiled = run.deployment.decision(view)
    assert compiled is not None
    card = LoadedModel.open(run.bundle).card
    assert card.decision is not None and compiled["rule"] == card.decision.rule
    assert compiled["vkSha256"] == run.bundle.manifest["sha256"]["vk"]
    assert product.describe().endswith(f"if decision == 1 (in the circuit: {card.decision.rule})")
    assert (view.instance_count, view.output_count, view.output_scale) == (1, 1, 0)


@pytest.mark.parametrize("kind", ["threshold", "argmax"])
def test_no_score_in_calldata_logs_or_storage(
    privacy_runs: dict[str, PrivacyRun], chain: Any, kind: str
) -> None:
    run = privacy_runs[kind]
    assert len(run.raw) == 2 * run.scores.shape[1]
    scan = _scan(run, chain)
    assert scan.transactions >= 10 and scan.logs >= 8 and scan.storage_slots >= 20, scan
    assert scan.calldata_words > 100  # the proofs and instances were read
    assert scan.findings == []


def test_the_same_scan_finds_the_score_of_a_plain_bundle(
    privacy_runs: dict[str, PrivacyRun], chain: Any
) -> None:
    """Control: the plain bundle's proofs carry the score as a public instance (calldata). The
    raw quantized outputs find it in both claims; the score's own encodings in at least one."""
    run = privacy_runs["plain"]
    scale = run.deployment.model(run.model).output_scale
    assert scale > 0
    assert [
        p.proof.instances[0] for p in run.proofs
    ] == run.raw  # the instances are the raw outputs
    by_raw = _scan(run, chain)
    claims = [f for f in by_raw.findings if f.startswith("calldata") and " claim: " in f]
    assert len(claims) == 2 and all("raw quantized output" in f for f in claims), by_raw.findings
    assert not any(f.startswith(("log", "storage")) for f in by_raw.findings)  # events: none
    # the score's fixed-point words alone (no knowledge of the circuit) find it too, where the
    # quantized output rounds to the float score within one unit
    by_score = _scan(run, chain, raw=False)
    signed = [v - BN254_R if v > BN254_R // 2 else v for v in run.raw]
    near = [
        v for v in signed for x in np.ravel(run.scores) if abs(v - round(float(x) * 2**scale)) <= 1
    ]
    if near:  # a quantized output within one unit of its float score: that word is found too
        assert any(f"at 2^-{scale}" in f for f in by_score.findings), by_score.findings


def test_product_on_a_decision_model_refuses_another_rule(
    privacy_runs: dict[str, PrivacyRun], accounts: Any
) -> None:
    run = privacy_runs["threshold"]
    insurer = accounts[1]
    for rule in (
        {"comparison": ops.Comparison.AT_MOST, "threshold": 1.4},
        {"comparison": ops.Comparison.AT_LEAST, "threshold": 2.0},
        {"pay_if_class": 0},
    ):
        with pytest.raises(InvalidInput) as info:
            ops.create_product(
                run.deployment, insurer, run.pool_id, Decimal(1), model=run.model, **rule
            )
        message = str(info.value)
        assert "\n" not in message
        assert f"{run.model} v1 is a decision model" in message, message
        assert "create the product without a rule (pay iff decision == 1)" in message
    # the rule itself, spelled out, is the same product rule
    same = ops.create_product(
        run.deployment,
        insurer,
        run.pool_id,
        Decimal(1),
        model=run.model,
        comparison=ops.Comparison.AT_LEAST,
        threshold=1.0,
    )
    assert same.rule == ops.DECISION_RULE


def test_only_the_pool_insurer_creates_a_decision_product(
    privacy_runs: dict[str, PrivacyRun], accounts: Any
) -> None:
    run = privacy_runs["threshold"]
    stranger = accounts[8]
    with pytest.raises(ops.NotPermitted, match="is not the insurer of pool"):
        ops.create_product(run.deployment, stranger, run.pool_id, Decimal(1), model=run.model)


def test_a_plain_model_is_not_taken_for_a_decision_model(
    privacy_runs: dict[str, PrivacyRun],
) -> None:
    run = privacy_runs["plain"]
    assert run.deployment.decision(run.deployment.model(run.model)) is None
    decided = privacy_runs["threshold"]
    rule = decided.deployment.decision(decided.deployment.model(decided.model))
    assert rule is not None and rule["comparison"] == "at_least"
