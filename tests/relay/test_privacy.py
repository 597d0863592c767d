"""Privacy over the whole test run (this module is ordered last).

Every patient record any relay test used, of either served model, is looked for, in every
encoding the system uses (decimal text of raw values and of the values after the model's own
preprocessing, as float64 and float32, IEEE-754 bytes either endianness, EZKL's quantized field
elements, at the bundle's input scale, of preprocessed values of -16 units or less, client salt
limbs as text, and the hex of all binary forms), in: every log line (in-process and subprocess
relays), every HTTP response (headers and body), every job store (SQLite file, WAL, key file,
prover scratch space) after its relay stopped, and the calldata and event logs of every
transaction on every test chain. Key material and passphrases are looked for in the same places.
"""

from __future__ import annotations

import json
import sqlite3
import struct

import pytest

from prover.relay.states import JobState
from prover.zk.fields import BN254_R

from .support import MODEL, ZOO_MODEL, PrivacyLedger, job_body, make_model_records, make_records

pytestmark = pytest.mark.slow


def test_scanner_finds_planted_leaks(relay_models, regression_zoo):
    records = make_records(2, seed=101, client_salt_every=1)
    zoo = relay_models[(ZOO_MODEL, 1)].loaded
    [other] = make_model_records(ZOO_MODEL, zoo, regression_zoo.held_out_rows, 1, seed=102)
    ledger = PrivacyLedger()
    for (name, _), model in relay_models.items():
        ledger.add_model(name, model.loaded)
    ledger.add_records([*records, other])
    feature = next(v for v in records[0].features if v)
    ledger.add_text("log", f"debug: record {json.dumps(records[0].features)}")
    ledger.add_blob("calldata", b"\x00" * 7 + struct.pack(">d", feature) + b"\x01")
    ledger.add_text("response", f'{{"salt": {records[1].salt}}}')
    # the second model's preprocessed input (identity here: negative raw values), as felts
    scale = zoo.bundle.input_scale
    negative = min(zoo.preprocessor.transform(other.features))
    assert round(negative * (1 << scale)) <= -16
    felt = round(negative * (1 << scale)) % BN254_R
    ledger.add_blob("witness", b"\x07" * 5 + felt.to_bytes(32, "little") + b"\x07")
    ledger.add_text("clean", "job 1234 paid (claim 3, 10000000000000000 wei) after 1.23 s")
    found = ledger.scan()
    assert any(f.startswith("log: patient") for f in found)
    assert any(f.startswith("calldata: patient") and "as bytes" in f for f in found)
    assert any(f.startswith("response: patient") for f in found)
    assert any(f.startswith(f"witness: patient #{other.index}") for f in found)
    assert not any(f.startswith("clean") for f in found)


def test_no_patient_data_or_secret_anywhere(
    make_relay,
    client_for,
    dev_chain,
    zoo_product,
    regression_zoo,
    relay_models,
    ledger,
    prover_pool,
):
    # This module's own workload (both served models), so the scan is meaningful alone too.
    zoo = relay_models[(ZOO_MODEL, 1)].loaded
    records = [
        *make_records(4, seed=111, client_salt_every=1),
        *make_model_records(ZOO_MODEL, zoo, regression_zoo.held_out_rows, 2, seed=112),
    ]
    ledger.add_records(records)
    policies = [
        *dev_chain.issue_policies(4),
        *dev_chain.issue_policies(2, product_id=zoo_product.product_id),
    ]
    relay = make_relay(confirmations=1)
    client = client_for(relay)
    ids = []
    for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
        response = client.post("/v1/jobs", json=job_body(record, policy, f"privacy-{i:04d}"))
        assert response.status_code == 202
        ids.append(response.json()["job_id"])
    # rejected requests carrying real values must not echo them either
    body = job_body(records[0], policies[0], "privacy-bad-1")
    assert client.post("/v1/jobs", json={**body, "features": records[0].features[:29]}).status_code
    bad = list(records[0].features)
    bad[3] = 1e9
    assert client.post("/v1/jobs", json={**body, "features": bad}).status_code == 422
    assert client.post("/v1/jobs", json={**body, "model": "x"}).status_code == 422
    zoo_body = job_body(records[4], policies[4], "privacy-bad-2")
    wrong = {**zoo_body, "features": [*records[4].features[:3], 1e9, *records[4].features[4:]]}
    assert client.post("/v1/jobs", json=wrong).status_code == 422
    assert client.post("/v1/jobs", json={**zoo_body, "model": MODEL}).status_code == 422
    assert relay.wait_idle(120), relay.store.counts()
    for job_id in ids:
        client.get(f"/v1/jobs/{job_id}")
    client.get("/v1/jobs")
    client.get("/metrics")
    client.get("/healthz")

    # After proving, the store holds no patient input, not even sealed.
    db = relay.settings.db_path
    relay.stop()
    with sqlite3.connect(db) as conn:
        (sealed,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE sealed_input IS NOT NULL AND state NOT IN (?, ?)",
            (JobState.QUEUED.value, JobState.PROVING.value),
        ).fetchone()
    assert sealed == 0
    ledger.add_path("privacy job store", relay.settings.data_dir)
    ledger.add_path("prover scratch space", prover_pool._work_root)
    assert ledger.collect_chain(dev_chain.w3, "privacy chain") >= 6

    findings = ledger.scan()
    assert findings == [], "\n".join(findings[:20])
    print(
        f"\nprivacy scan: {len(ledger.records)} patient records x {ledger.source_count()} "
        f"sources (logs, responses, stores, transactions): no leak"
    )
