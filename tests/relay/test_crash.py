"""kill -9 the relay (a real ``python -m prover.relay serve`` process) at named and random points
across a 50-job run, restarting it each time: every job ends final, exactly one claim per job,
no nonce gap."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from prover.anvil import free_port

from .support import (
    ROOT,
    RelayProcess,
    encrypt_key,
    job_body,
    make_records,
    state_counts,
    store_rows,
    wait_until,
)

pytestmark = pytest.mark.slow
N_JOBS = 80  # proofs take ~50 ms: enough work left for every kill point
SEED = 20240917
FINAL = ("paid", "denied", "failed")

#: (crash point or test action, why it matters)
PLAN = [
    ("proved:3", "a proof came back but is not stored yet"),
    ("after_sign:2", "signed transaction persisted, never broadcast"),
    ("after_broadcast:2", "a node has the transaction, the store says signed"),
    ("after_submit:3", "submitted, before any receipt"),
    ("before_final:2", "receipt confirmed, job not yet paid/denied"),
    ("kill:proving", "SIGKILL from the test while jobs are proving"),
    ("kill:random", "SIGKILL from the test at a random moment"),
    ("kill:random", "SIGKILL from the test at a random moment"),
    ("kill:random", "SIGKILL from the test at a random moment"),
]


def _relay_process(
    tmp: Path, node, dev_chain, bundle, hospital, ledger, label: str, stuck_timeout_s: float = 10
) -> tuple[RelayProcess, Path, LocalAccount]:
    """A ``serve`` subprocess with encrypted keystores, a fresh funded submitter and its
    secrets in the environment; ``(relay, job store path, submitter)``."""
    submitter: LocalAccount = Account.create()
    dev_chain.set_balance(submitter.address, 10**19)
    pw_h, pw_s, secret = secrets.token_hex(12), secrets.token_hex(12), secrets.token_hex(32)
    for name, value in [
        ("hospital passphrase", pw_h),
        ("submitter passphrase", pw_s),
        ("submitter key", submitter.key.hex()),
        ("nullifier secret", secret),
    ]:
        ledger.add_secret(name, value)
    data = tmp / "relay-data"
    config = tmp / "relay.toml"
    config.write_text(
        "\n".join(
            [
                f'rpc_urls = ["{node.url}"]',
                f'settlement = "{dev_chain.settlement.address}"',
                f'data_dir = "{data}"',
                "workers = 2",
                "confirmations = 2",
                "poll_interval_s = 0.05",
                f"stuck_timeout_s = {stuck_timeout_s}",
                "max_queue = 200",
                "[hospital_key]",
                f'keystore = "{encrypt_key(hospital.key, pw_h, tmp / "hospital.json")}"',
                "[submitter_key]",
                f'keystore = "{encrypt_key(submitter.key, pw_s, tmp / "submitter.json")}"',
                "[[models]]",
                'name = "breast_cancer_lr"',
                "version = 1",
                f'bundle = "{bundle.path}"',
                "",
            ]
        )
    )
    data_key = secrets.token_hex(32)
    ledger.add_secret("data key", data_key)
    env = {
        "ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE": pw_h,
        "ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE": pw_s,
        "ZKCARE_RELAY_NULLIFIER_SECRET": secret,
        "ZKCARE_RELAY_DATA_KEY": data_key,
    }
    relay = RelayProcess(config, env, free_port(), tmp / "relay.log")
    ledger.add_secret("client token", relay.add_client(data / "jobs.sqlite3"))
    ledger.add_path(f"subprocess relay log ({label})", relay.log_path)
    ledger.add_path(f"subprocess job store ({label})", data)
    return relay, data / "jobs.sqlite3", submitter


def test_kill_minus_9_at_every_step_loses_nothing_and_pays_once(
    tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger
):
    rng = random.Random(SEED)
    records = make_records(N_JOBS, seed=81)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(N_JOBS)
    relay, db, submitter = _relay_process(
        tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger, "kill -9 run"
    )
    bodies = [
        job_body(r, p, f"crash-{i:04d}")
        for i, (r, p) in enumerate(zip(records, policies, strict=True))
    ]
    accepted: dict[int, str] = {}

    def submit_all(upto: int = N_JOBS, *, new_only: bool = False) -> bool:
        """(Re)submit the first ``upto`` jobs (``new_only``: those not accepted yet); the same
        key must give the same job across restarts."""
        for i, body in enumerate(bodies[:upto]):
            if new_only and i in accepted:
                continue
            try:
                response = requests.post(
                    relay.url + "/v1/jobs", json=body, timeout=10, headers=relay.headers
                )
            except requests.RequestException:
                return False  # the relay died under us: resubmit after the restart
            ledger.add_response(response)
            assert response.status_code == 202, response.text
            assert accepted.setdefault(i, response.json()["job_id"]) == response.json()["job_id"]
        return True

    def finished() -> int:
        return sum(n for state, n in state_counts(db).items() if state in FINAL)

    def unfinished() -> int:
        return sum(n for state, n in state_counts(db).items() if state not in FINAL)

    try:
        for step, (action, why) in enumerate(PLAN):
            # Jobs arrive in waves (proofs take ~50 ms): every step has fresh work to crash.
            wave = (step + 1) * N_JOBS // (len(PLAN) + 1)
            if action.startswith("kill:"):
                relay.start()
                relay.wait_ready()
                if action == "kill:proving":
                    submit_all(wave, new_only=True)  # the last step re-submits every job
                    wait_until(lambda: state_counts(db).get("proving"), 60, "a job proving")
                    relay.kill9()
                else:
                    # A random moment while the wave arrives and is proved (proofs take ~50 ms).
                    intake = threading.Thread(target=submit_all, args=(wave,), daemon=True)
                    intake.start()
                    time.sleep(rng.uniform(0.05, 0.6))
                    relay.kill9()
                    intake.join(30)
            else:
                relay.start(crash_at=action)
                try:
                    relay.wait_ready()
                    submit_all(wave, new_only=True)
                except AssertionError:
                    pass  # crashed before serving (recovery work hit the point first)
                code = relay.wait_exit(timeout=90)
                assert code == -9, f"{action} ({why}) did not crash the relay: {relay.tail()}"
            assert unfinished() > 0 or len(accepted) < wave, f"work ran out before {action}"

        relay.start()
        relay.wait_ready()
        assert submit_all()
        wait_until(lambda: len(accepted) == N_JOBS and unfinished() == 0, 240, "every job final")
    finally:
        relay.terminate()

    log = relay.log_path.read_text()
    for action, _ in PLAN:
        if not action.startswith("kill:"):
            assert f"crash point {action.split(':')[0]} reached" in log
    assert relay.exits.count(-9) == len(PLAN)

    jobs = {r["id"]: r for r in store_rows(db, "SELECT * FROM jobs")}
    assert set(jobs) == set(accepted.values()) and len(jobs) == N_JOBS
    events = {}
    for name, args, tx in dev_chain.claim_events():
        if args["policyId"] in policies:
            assert args["policyId"] not in events, f"policy {args['policyId']} claimed twice"
            events[args["policyId"]] = (name, tx)
    for i, record in enumerate(records):
        job = jobs[accepted[i]]
        expected = "paid" if record.pays else "denied"
        assert job["state"] == expected, (job["reason"], i)
        name, tx = events[policies[i]]
        assert name == ("ClaimPaid" if record.pays else "ClaimDenied") and tx == job["tx_hash"]
        assert job["sealed_input"] is None
    # no nonce gap, none wasted: one transaction per job, nonces 0..49
    assert sorted(j["nonce"] for j in jobs.values()) == list(range(N_JOBS))
    assert dev_chain.w3.eth.get_transaction_count(submitter.address) == N_JOBS
    attempt_nonces = {r["nonce"] for r in store_rows(db, "SELECT nonce FROM attempts")}
    assert attempt_nonces == set(range(N_JOBS))
    for job in jobs.values():
        receipt = dev_chain.w3.eth.get_transaction_receipt(job["tx_hash"])
        assert receipt["status"] == 1
    requeued = store_rows(
        db, "SELECT COUNT(*) AS n FROM transitions WHERE detail = 'relay restarted while proving'"
    )
    assert requeued[0]["n"] >= 1


def test_kill_right_after_a_replacement_is_persisted(
    tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger
):
    """The replacement of a stuck transaction is on disk but was never broadcast: after the
    restart one of the job's two transactions (same nonce) is mined, and the job pays once."""
    records = make_records(2, seed=83)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(2)
    relay, db, submitter = _relay_process(
        tmp_path,
        node,
        dev_chain,
        diagnostic_bundle,
        hospital,
        ledger,
        "replacement crash",
        stuck_timeout_s=1.5,
    )
    bodies = [
        job_body(r, p, f"replace-crash-{i:04d}")
        for i, (r, p) in enumerate(zip(records, policies, strict=True))
    ]
    w3 = dev_chain.w3
    assert "error" not in w3.provider.make_request("evm_setIntervalMining", [0])
    try:
        relay.start(crash_at="after_replace:1")
        relay.wait_ready()
        ids = []
        for body in bodies:
            response = requests.post(
                relay.url + "/v1/jobs", json=body, timeout=10, headers=relay.headers
            )
            ledger.add_response(response)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        assert relay.wait_exit(timeout=90) == -9, relay.tail()
        attempts = store_rows(db, "SELECT job_id, nonce, tx_hash FROM attempts")
        replaced = [j for j in ids if sum(a["job_id"] == j for a in attempts) == 2]
        assert len(replaced) == 1, attempts  # persisted, then the relay died
        pending = w3.provider.make_request("txpool_content", [])["result"]["pending"]
        known = {tx["hash"] for txs in pending.values() for tx in txs.values()}
        newest = [a["tx_hash"] for a in attempts if a["job_id"] == replaced[0]][-1]
        assert newest not in known  # the replacement never reached the node
    finally:
        assert "error" not in w3.provider.make_request("evm_setIntervalMining", [1])
    try:
        relay.start()
        relay.wait_ready()
        wait_until(
            lambda: all(r["state"] in FINAL for r in store_rows(db, "SELECT state FROM jobs")),
            120,
            "both jobs final",
        )
    finally:
        relay.terminate()
    assert "crash point after_replace reached" in relay.log_path.read_text()
    jobs = {r["id"]: r for r in store_rows(db, "SELECT * FROM jobs")}
    events = [e for e in dev_chain.claim_events() if e[1]["policyId"] in policies]
    assert sorted(e[1]["policyId"] for e in events) == sorted(policies)  # one claim each
    for job_id, record in zip(ids, records, strict=True):
        job = jobs[job_id]
        assert job["state"] == ("paid" if record.pays else "denied"), job["reason"]
        hashes = {
            a["tx_hash"] for a in store_rows(db, "SELECT * FROM attempts") if a["job_id"] == job_id
        }
        assert job["tx_hash"] in hashes
    assert sorted(j["nonce"] for j in jobs.values()) == [0, 1]
    assert w3.eth.get_transaction_count(submitter.address) == 2


def test_a_second_serve_on_the_same_data_dir_is_refused_in_one_line(
    tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger
):
    """Before: a 17-line traceback from the server's lifespan."""
    relay, _db, _submitter = _relay_process(
        tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger, "second serve"
    )
    relay.start()
    try:
        relay.wait_ready()
        twin = subprocess.run(
            [sys.executable, "-m", "prover.relay", "serve", "--config", str(relay.config),
             "--port", str(free_port())],
            cwd=ROOT, env={**os.environ, **relay.env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        relay.terminate()
    lines = [line for line in twin.stderr.splitlines() if not line.startswith("INFO")]
    assert twin.returncode == 1, twin.stderr
    assert lines == [
        f"Error: another relay is running with data_dir {tmp_path / 'relay-data'} (a second "
        "instance needs its own data_dir and a shared store_dsn)"
    ], twin.stderr
