"""Several models at once: every request is checked against its own model's card, proved with
its own bundle and preprocessing and settled on that model's product; a bundle without its own
preprocessing (or without a card) is refused at start; a witness failure's reason carries
EZKL's cause."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from prover.exceptions import RelayConfigError
from prover.relay.keys import RelayKeys
from prover.relay.service import Relay, resolve_models
from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings
from prover.relay.states import JobState
from prover.zk.circuit import Bundle
from prover.zk.fields import fixed_to_float

from .support import (
    MODEL,
    ZOO_MODEL,
    ZOO_PAYS_AT_LEAST,
    Record,
    float_outputs,
    job_body,
    make_model_records,
    make_records,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo_records(relay_models, regression_zoo, ledger) -> list[Record]:
    records = make_model_records(
        ZOO_MODEL, relay_models[(ZOO_MODEL, 1)].loaded, regression_zoo.held_out_rows, 4, seed=502
    )
    ledger.add_records(records)
    return records


def test_two_models_at_once_are_proved_and_settled_each_with_its_own_bundle(
    make_relay, client_for, dev_chain, zoo_product, zoo_records, ledger
):
    diagnostic = make_records(3, seed=501)
    ledger.add_records(diagnostic)
    assert any(v < 0 for r in zoo_records for v in r.features)  # negatives its card allows
    records = [r for pair in zip(diagnostic, zoo_records, strict=False) for r in pair]
    records += zoo_records[len(diagnostic) :]
    policies = {
        MODEL: iter(dev_chain.issue_policies(len(diagnostic))),
        ZOO_MODEL: iter(
            dev_chain.issue_policies(len(zoo_records), product_id=zoo_product.product_id)
        ),
    }
    relay = make_relay(confirmations=1)
    assert sorted(relay.models) == [(MODEL, 1), (ZOO_MODEL, 1)]
    client = client_for(relay)
    ids = []
    for i, record in enumerate(records):
        body = job_body(record, next(policies[record.model]), f"two-models-{i:04d}")
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    assert relay.wait_idle(180), relay.store.counts()

    for job_id, record in zip(ids, records, strict=True):
        status = client.get(f"/v1/jobs/{job_id}").json()
        model = relay.model(record.model, 1)
        card, layout = model.card, model.card.instance_layout
        job = relay.store.get(job_id)
        # the claim's instances follow the card's layout; the job reports only its decision
        assert len(job.instances) == layout.count
        assert layout.commitment == "proof"  # both models: KZG-committed input (polycommit)
        assert layout.commitment_of(job.proof, job.instances) == job.input_commitment
        assert "outputs" not in status and "logit" not in status
        outputs = [
            fixed_to_float(job.instances[i], layout.output_scale) for i in layout.output_indexes
        ]
        assert len(outputs) == card.output_count == 1
        expected = float_outputs(model.loaded, record.features)
        tolerance = max(card.fidelity.max_abs_error, card.fidelity.tolerance or 0.0) + 0.05
        assert abs(outputs[0] - expected[0]) < tolerance, (record.model, expected)
        pays = outputs[0] <= 0 if record.model == MODEL else outputs[0] >= ZOO_PAYS_AT_LEAST
        assert status["state"] == (JobState.PAID if pays else JobState.DENIED), status["reason"]
        assert status["decision"] == ("paid" if pays else "denied")
        assert status["amount_wei"] == (str(10**16) if pays else "0")


ZOO_WIDTH = 10


def _set(index: int, value: float) -> Callable[[list[float]], list[float]]:
    def change(features: list[float]) -> list[float]:
        out = list(features)
        out[index] = value
        return out

    return change


CARD_CHECKS = [
    # (id, requested model, record's model, change, detail)
    (
        "zoo-short",
        ZOO_MODEL,
        ZOO_MODEL,
        lambda f: f[:9],
        "invalid patient record: model diabetes_mlp takes 10 features, got 9",
    ),
    (
        "zoo-above-range",
        ZOO_MODEL,
        ZOO_MODEL,
        _set(3, 987654.25),
        "invalid patient record: model diabetes_mlp: features[3] (x3) is outside the allowed "
        "range [",
    ),
    (
        "zoo-below-range",
        ZOO_MODEL,
        ZOO_MODEL,
        _set(2, -987654.25),
        "model diabetes_mlp: features[2] (x2) is outside the allowed range [",
    ),
    (
        "diagnostic-negative",
        MODEL,
        MODEL,
        _set(3, -1.5),
        "model breast_cancer_lr: features[3] (mean area) is negative; the card allows [0, ",
    ),
    (
        "zoo-record-for-the-diagnostic-model",
        MODEL,
        ZOO_MODEL,
        lambda f: f,
        "model breast_cancer_lr takes 30 features, got 10",
    ),
    (
        "diagnostic-record-for-the-zoo-model",
        ZOO_MODEL,
        MODEL,
        lambda f: f,
        "model diabetes_mlp takes 10 features, got 30",
    ),
]


@pytest.mark.parametrize(
    "model,source,change,detail", [c[1:] for c in CARD_CHECKS], ids=[c[0] for c in CARD_CHECKS]
)
def test_features_are_checked_against_the_requested_models_card(
    make_relay, client_for, dev_chain, zoo_product, zoo_records, model, source, change, detail
):
    relay = make_relay(process=False)
    client = client_for(relay)
    record = zoo_records[0] if source == ZOO_MODEL else make_records(1, seed=503)[0]
    product = zoo_product.product_id if model == ZOO_MODEL else dev_chain.product_id
    (policy,) = dev_chain.issue_policies(1, product_id=product)
    body = {**job_body(record, policy, "card-check-1"), "model": model}
    body["features"] = change(record.features)
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert list(response.json()) == ["detail"]
    text = response.json()["detail"]
    assert detail in text and "\n" not in text
    assert "987654" not in text and "-1.5" not in text  # names the feature, never the value
    assert all(n == 0 for n in relay.store.counts().values())


def test_a_negative_value_is_accepted_where_the_card_allows_it(
    make_relay, client_for, dev_chain, zoo_product, zoo_records
):
    record = zoo_records[0]
    negative = [i for i, v in enumerate(record.features) if v < 0]
    assert negative
    relay = make_relay(process=False)
    card = relay.model(ZOO_MODEL, 1).card
    assert all(card.input.ranges[i][0] < 0 for i in negative)
    (policy,) = dev_chain.issue_policies(1, product_id=zoo_product.product_id)
    response = client_for(relay).post("/v1/jobs", json=job_body(record, policy, "negative-ok"))
    assert response.status_code == 202, response.text
    assert relay.store.counts()[JobState.QUEUED] == 1


def _settings(tmp_path: Path, diagnostic: Path, bundle: Path) -> RelaySettings:
    return RelaySettings(
        rpc_urls=["http://127.0.0.1:9"],
        settlement="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        hospital_key=KeyConfig(keystore=tmp_path / "unused.json"),
        submitter_key=KeyConfig(keystore=tmp_path / "unused.json"),
        nullifier_secret="ab" * 32,
        data_key="5e" * 32,
        data_dir=tmp_path / "data",
        models=[
            ModelConfig(name=MODEL, bundle=diagnostic),
            ModelConfig(name=ZOO_MODEL, bundle=bundle),
        ],
    )


def _copy(bundle: Bundle, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(bundle.path, tmp_path / name))


def _edit_manifest(path: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_model_without_its_own_preprocessing_or_card_is_refused_at_start(
    regression_bundle, diagnostic_bundle, tmp_path
):
    account = Account.create()
    keys = RelayKeys(account, account)

    def refused(bundle: Path) -> str:
        with pytest.raises(RelayConfigError) as info:
            Relay(_settings(tmp_path, diagnostic_bundle.path, bundle), keys=keys)
        [problem] = info.value.problems  # the diagnostic model is fine: one line, this one
        assert problem.startswith("models[1].bundle: ") and "\n" not in problem
        return problem

    missing = _copy(regression_bundle, tmp_path, "missing")
    (missing / "preprocess.json").unlink()
    assert "preprocess.json is missing" in refused(missing)

    swapped = _copy(regression_bundle, tmp_path, "swapped")  # another model's preprocessing
    shutil.copyfile(diagnostic_bundle.path / "preprocess.json", swapped / "preprocess.json")
    assert "its preprocess.json is missing or altered" in refused(swapped)

    unlisted = _copy(regression_bundle, tmp_path, "unlisted")  # and not named in the manifest
    (unlisted / "preprocess.json").unlink()
    _edit_manifest(
        unlisted, lambda m: m.update(files=[f for f in m["files"] if f != "preprocess.json"])
    )
    assert "its preprocess.json is missing or altered" in refused(unlisted)

    cardless = _copy(regression_bundle, tmp_path, "cardless")  # built before `model build`
    _edit_manifest(cardless, lambda m: m.pop("card"))
    assert "has no model card" in refused(cardless)

    # a configured preprocessing file is a check only, never a replacement
    other = ModelConfig(
        name=ZOO_MODEL,
        bundle=regression_bundle.path,
        preprocess=diagnostic_bundle.path / "preprocess.json",
    )
    with pytest.raises(RelayConfigError, match=r"models\[0\].preprocess: .* is not the prepro"):
        resolve_models([other])
    own = ModelConfig(
        name=ZOO_MODEL,
        bundle=regression_bundle.path,
        preprocess=regression_bundle.path / "preprocess.json",
    )
    assert list(resolve_models([own])) == [(ZOO_MODEL, 1)]


WIDE_MODEL = "diabetes_wide"


def test_a_witness_failure_fails_the_job_with_ezkls_cause(
    make_relay, client_for, dev_chain, regression_bundle, ledger, tmp_path
):
    # A card that claims far more than the circuit holds (a hand-edited manifest): the relay
    # accepts the record, and EZKL's witness generation overflows its lookup decomposition.
    wide = _copy(regression_bundle, tmp_path, "wide")
    _edit_manifest(wide, lambda m: m["card"]["input"].update(ranges=[[-1e9, 1e9]] * ZOO_WIDTH))
    models = resolve_models([ModelConfig(name=WIDE_MODEL, bundle=wide)])
    ledger.add_model(WIDE_MODEL, models[(WIDE_MODEL, 1)].loaded)
    product = dev_chain.add_model(models[(WIDE_MODEL, 1)].loaded.bundle, WIDE_MODEL).product_id
    (policy,) = dev_chain.issue_policies(1, product_id=product)
    record = Record(-1, [123456.789 + 1.125 * i for i in range(ZOO_WIDTH)], None, 0.0, WIDE_MODEL)
    ledger.add_records([record])
    relay = make_relay(models=models, workers=1, confirmations=1)
    response = client_for(relay).post("/v1/jobs", json=job_body(record, policy, "too-wide"))
    assert response.status_code == 202, response.text
    assert relay.wait_idle(60), relay.store.counts()
    job = relay.store.get(response.json()["job_id"])
    assert job.state == JobState.FAILED
    assert job.reason.startswith("proving failed: ezkl gen_witness failed: "), job.reason
    assert "decomposition error" in job.reason, job.reason
    assert re.search(r"\d{4,}", job.reason) is None, job.reason  # EZKL's integers redacted
    moves = [to for _, to, _, _ in relay.store.history(job.id)]
    assert moves == ["queued", "proving", "failed"]  # deterministic: not retried
