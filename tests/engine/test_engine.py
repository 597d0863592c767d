"""Remote provers through Procrastinate: real proofs, a real PostgreSQL broker, anvil payouts.

Prover hosts are separate process groups on this machine (loopback only). The privacy scan
(last in this module) reads every NOTIFY and every broker-table snapshot taken during the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from relay.support import PrivacyLedger, bearer, job_body, make_records, token_for, wait_until

from prover.exceptions import EngineConfigError
from prover.relay.api import create_app
from prover.relay.auth import Scope
from prover.relay.engine import EngineProverWorker, EngineSettings
from prover.relay.engine_common import RESULTS_TABLE, write_key_file
from prover.relay.engine_prover import check_against_relays, held_bundles
from prover.relay.states import JobState
from prover.relay.worker import ModelRef

from .conftest import ROOT

pytestmark = pytest.mark.slow


def _post(relay, records, policies, prefix, ledger):
    ledger.add_records(records)
    client = TestClient(create_app(relay, manage_relay=False), raise_server_exceptions=False)
    token = token_for(relay, Scope.SUBMIT)  # a hospital's client: it may submit, nothing else
    ledger.add_secret("client token", token)
    client.headers.update(bearer(token))
    ids = []
    for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
        body = job_body(record, policy, f"{prefix}-{i:03d}")
        ledger.add_secret("record id", body["record_id"])
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ledger.add_text("HTTP response", response.text)
        ids.append(response.json()["job_id"])
    return ids


def _assert_settled_once(relay, chain, ids, records, policies):
    for job_id, record in zip(ids, records, strict=True):
        job = relay.store.get(job_id)
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), (
            job.reason,
            relay.store.history(job_id),
        )
    events = [e for e in chain.claim_events() if e[1]["policyId"] in set(policies)]
    assert sorted(e[1]["policyId"] for e in events) == sorted(policies)  # one per job
    for name, args, tx in events:
        job = relay.store.get(ids[policies.index(args["policyId"])])
        assert tx == job.tx_hash
        assert name == ("ClaimPaid" if job.state == JobState.PAID else "ClaimDenied")


def _results(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT task_id, worker, ok FROM {RESULTS_TABLE}").fetchall()


def test_jobs_through_two_prover_hosts_each_paid_once(
    engine_relay, engine_provers, engine_chain, engine_pg, engine_ledger
):
    hosts = [engine_provers(), engine_provers()]
    relay = engine_relay()
    assert isinstance(relay.worker, EngineProverWorker)
    records = make_records(6, seed=71)
    policies = engine_chain.issue_policies(len(records))
    # who may not submit: no token (401) and a read-only client (403); nothing reaches the broker
    app = TestClient(create_app(relay, manage_relay=False), raise_server_exceptions=False)
    body = job_body(records[0], policies[0], "two-hosts-refused")
    assert app.post("/v1/jobs", json=body).status_code == 401
    reader = bearer(token_for(relay, Scope.READ))
    refused = app.post("/v1/jobs", json=body, headers=reader)
    assert refused.status_code == 403, refused.text
    assert "lacks the 'submit' scope" in refused.json()["detail"]
    assert sum(relay.store.counts().values()) == 0 and not relay.worker._pending
    ids = _post(relay, records, policies, "two-hosts", engine_ledger)
    assert relay.wait_idle(timeout=180), relay.store.counts()
    _assert_settled_once(relay, engine_chain, ids, records, policies)
    workers = {w for _, w, ok in _results(engine_pg.dsn) if ok}
    assert len(workers) == 2, workers  # both hosts proved
    assert all(h.proc.poll() is None for h in hosts)
    tx_count = engine_chain.w3.eth.get_transaction_count(relay.keys.submitter.address)
    assert tx_count == len(records)


def test_kill9_of_a_prover_host_mid_proof_runs_the_task_elsewhere_and_pays_once(
    engine_relay, engine_provers, engine_chain, engine_pg, engine_ledger
):
    first = engine_provers()
    relay = engine_relay()
    records = make_records(1, seed=72)
    policies = engine_chain.issue_policies(1)
    (job_id,) = _post(relay, records, policies, "kill9", engine_ledger)

    def doing():
        with psycopg.connect(engine_pg.dsn) as conn:
            return conn.execute(
                "SELECT id FROM procrastinate_jobs WHERE status = 'doing'"
            ).fetchall()

    wait_until(doing, 30, "the first host to start proving", poll=0.02)
    first.kill9()  # mid-proof: a proof takes ~1 s
    (task_id,) = list(relay.worker._pending)
    assert task_id not in {t for t, _, _ in _results(engine_pg.dsn)}  # killed before a result
    assert relay.store.get(job_id).state == JobState.PROVING
    second = engine_provers()
    assert relay.wait_idle(timeout=120), relay.store.counts()
    _assert_settled_once(relay, engine_chain, [job_id], records, policies)
    assert relay.worker.retried >= 1  # handed back through Procrastinate's stalled-job API
    with psycopg.connect(engine_pg.dsn) as conn:
        (worker,) = conn.execute(
            f"SELECT worker FROM {RESULTS_TABLE} WHERE ok AND task_id = %s", (task_id,)
        ).fetchone()
    assert worker.endswith(f":{second.proc.pid}")
    history = [to for _, to, _, _ in relay.store.history(job_id)]
    assert history.count("proving") == 1  # the relay's job never had to be re-queued


def test_random_kill9_of_prover_hosts_while_jobs_run_pays_each_job_once(
    engine_relay, engine_provers, engine_chain, engine_pg, engine_ledger
):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"random kill seed {seed}")
    hosts = [engine_provers() for _ in range(3)]
    relay = engine_relay()
    records = make_records(8, seed=74)
    policies = engine_chain.issue_policies(len(records))
    ids = _post(relay, records, policies, "random-kill", engine_ledger)
    for _ in range(2):
        time.sleep(rng.uniform(0.3, 2.0))
        alive = [h for h in hosts if h.proc.poll() is None]
        rng.choice(alive).kill9()
        hosts.append(engine_provers(wait=False))  # a replacement host joins
    assert relay.wait_idle(timeout=180), (seed, relay.store.counts())
    _assert_settled_once(relay, engine_chain, ids, records, policies)
    sent = engine_chain.w3.eth.get_transaction_count(relay.keys.submitter.address)
    assert sent == len(records), seed


def test_duplicate_late_and_forged_results_change_nothing(
    engine_relay, engine_provers, engine_chain, engine_pg, engine_ledger
):
    relay = engine_relay()
    records = make_records(2, seed=73)
    policies = engine_chain.issue_policies(2)
    (done_id,) = _post(relay, records[:1], policies[:1], "dup-a", engine_ledger)
    host = engine_provers()
    wait_until(lambda: relay.store.get(done_id).state.final, 90, "the first job")
    with psycopg.connect(engine_pg.dsn, autocommit=True) as conn:
        task_id, proof, instances = conn.execute(
            f"SELECT task_id, proof, instances FROM {RESULTS_TABLE} WHERE ok"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        # a duplicate (e.g. a retried task finishing late) is not stored, and its NOTIFY ...
        cur = conn.execute(
            f"INSERT INTO {RESULTS_TABLE} (task_id, bundle_hash, ok, worker, reason)"
            " VALUES (%s, 'x', false, 'late', 'late') ON CONFLICT (task_id) DO NOTHING",
            (task_id,),
        )
        assert cur.rowcount == 0
        conn.execute("SELECT pg_notify('zkcare_engine_results', %s)", (task_id,))
    time.sleep(1.5)
    before = relay.store.get(done_id)
    assert before.state.final and before.tx_hash
    n_tx = engine_chain.w3.eth.get_transaction_count(relay.keys.submitter.address)

    # a result forged into the broker for a pending task (the first job's proof) is refused
    host.kill9()
    (pending_id,) = _post(relay, records[1:], policies[1:], "dup-b", engine_ledger)
    wait_until(lambda: relay.worker._pending, 30, "a pending task")
    (forged_task,) = list(relay.worker._pending)
    with psycopg.connect(engine_pg.dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {RESULTS_TABLE} (task_id, bundle_hash, ok, proof, instances, worker)"
            " SELECT %s, bundle_hash, true, proof, instances, 'forger' FROM "
            f"{RESULTS_TABLE} WHERE task_id = %s",
            (forged_task, task_id),
        )
        conn.execute("SELECT pg_notify('zkcare_engine_results', %s)", (forged_task,))
    wait_until(
        lambda: any(
            "not this task's record" in (d or "") for *_, d in relay.store.history(pending_id)
        ),
        30,
        "the forged result to be refused",
    )
    engine_provers()
    assert relay.wait_idle(timeout=120), relay.store.counts()
    _assert_settled_once(relay, engine_chain, [done_id, pending_id], records, policies)
    after = relay.store.get(done_id)
    assert (after.state, after.tx_hash, after.proof) == (before.state, before.tx_hash, before.proof)
    assert engine_chain.w3.eth.get_transaction_count(relay.keys.submitter.address) == n_tx + 1


def _prover_cmd(pg, bundles: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prover.relay.engine", "prover", "--dsn", pg.dsn,
         "--bundles", str(bundles), "--key", str(key), "--concurrency", "1"],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )  # fmt: skip


def test_a_prover_with_another_bundle_hash_or_key_is_refused(
    engine_pg, engine_key, diagnostic_bundle, tmp_path
):
    worker = EngineProverWorker(
        EngineSettings(dsn=engine_pg.dsn, public_key=engine_key[1]),
        {"m": ModelRef("m", str(diagnostic_bundle.path))},
    )  # publishes the bundle it serves and the key it seals for
    try:
        other = tmp_path / "bundles" / diagnostic_bundle.path.name
        shutil.copytree(diagnostic_bundle.path, other)
        sample = other / "sample_proof.json"
        sample.write_text(sample.read_text() + "\n")  # same model, different content hash
        refused = _prover_cmd(engine_pg, other.parent, engine_key[0])
        assert refused.returncode != 0
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "refusing to prove with it" in lines[0], refused.stderr
        assert "the relay serves " + worker.bundle_hashes["m"][:16] in lines[0]

        foreign = tmp_path / "foreign.key"
        write_key_file(foreign)
        refused = _prover_cmd(engine_pg, diagnostic_bundle.path, foreign)
        assert refused.returncode != 0
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not the key the relay seals" in lines[0], refused.stderr

        missing = _prover_cmd(engine_pg, tmp_path / "nowhere", engine_key[0])
        assert missing.returncode != 0
        assert missing.stderr.strip().splitlines() == [
            f"Error: --bundles {tmp_path / 'nowhere'} is not a directory"
        ]
    finally:
        worker.close()


def test_a_prover_proves_only_with_the_bundles_the_relays_serve(
    engine_pg, engine_key, diagnostic_bundle, tmp_path
):
    """A bundles folder also holding other models' bundles: those are skipped, not loaded; a
    folder with none the relays serve is refused in one line."""
    worker = EngineProverWorker(
        EngineSettings(dsn=engine_pg.dsn, public_key=engine_key[1]),
        {"m": ModelRef("m", str(diagnostic_bundle.path))},
    )
    try:
        other = tmp_path / "someone_elses_model"
        shutil.copytree(diagnostic_bundle.path, other)
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["name"] = "someone_elses_model"
        (other / "manifest.json").write_text(json.dumps(manifest))
        held = {**held_bundles(diagnostic_bundle.path), **held_bundles(other)}
        assert len(held) == 2
        usable = asyncio.run(check_against_relays(engine_pg.dsn, held, engine_key[1]))
        assert list(usable) == [worker.bundle_hashes["m"]]
        with pytest.raises(EngineConfigError, match="none of the bundles held here"):
            asyncio.run(check_against_relays(engine_pg.dsn, held_bundles(other), engine_key[1]))
    finally:
        worker.close()


def test_the_broker_never_holds_a_feature_value_salt_or_record_id(
    engine_tap, engine_ledger, engine_pg
):
    """Ordered last in this module: scans what the tap saw during the tests above."""
    import psycopg as pg

    with pg.connect(engine_pg.dsn) as conn:
        engine_tap.snapshot(conn)
    assert engine_tap.notifications, "the tap saw no NOTIFY"
    assert any(t == "procrastinate_jobs" and '"sealed"' in r for t, r in engine_tap.snapshots)
    for channel, payload in engine_tap.notifications:
        engine_ledger.add_text(f"NOTIFY {channel}", payload)
    for table, row in engine_tap.snapshots:
        engine_ledger.add_text(f"broker table {table}", row)
        if table == "procrastinate_jobs":
            args = json.loads(row)["args"]
            assert set(args) == {"task_id", "sealed"}, args
    assert len(engine_ledger.records) >= 9
    planted = PrivacyLedger(records=engine_ledger.records[:1], models=engine_ledger.models)
    planted.add_text("planted NOTIFY", json.dumps({"f": engine_ledger.records[0].features}))
    assert planted.scan(), "the scanner misses a planted feature list"
    findings = engine_ledger.scan()
    assert findings == [], findings[:20]
