"""The relay's attacker suite (issue 10): every finding of the security review reproduced as an
attack that worked before the fix, and the authentication of every endpoint and scope.

Findings, each with its test below:

1. no authentication: anyone reaching the port got claims attested and paid
   (``test_anonymous_callers_cannot_submit_or_read``, the scope matrix);
2. ``--host 0.0.0.0`` accepted without TLS (``test_a_public_bind_without_tls_or_proxy_…``);
3. ``GET /v1/jobs`` listed every job to anyone, ``/healthz`` showed addresses and errors
   (``test_clients_see_only_their_own_jobs_and_health_is_for_admins``);
4. ``jobs.sqlite3`` 0644, the data key beside it, jobs kept forever (``test_store_files_…``,
   ``test_the_data_key_must_live_apart…``, ``test_finished_jobs_are_pruned…``);
5. the same record on the same policy under a new idempotency key accepted, mined, reverted and
   reported as a bare ``transaction reverted on-chain`` (``test_the_same_record_…``,
   ``test_a_claim_reverted_on_chain_fails_with_the_decoded_custom_error``);
6. a chain outage blocked handlers 10-20 s and ``/healthz`` said ``ok`` (``test_outage_…``,
   ``test_a_hung_chain_costs_a_request_at_most_the_intake_timeout``);
7. error bodies echoed the model name and the idempotency key (``test_error_bodies_…``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from prover.exceptions import AuthenticationFailed, InsecureBind, RelayConfigError, RelayError
from prover.relay.__main__ import cli
from prover.relay.auth import Scope
from prover.relay.service import Relay
from prover.relay.settings import RelaySettings, check_bind
from prover.relay.states import JobState

from .support import (
    TcpProxy,
    bearer,
    job_body,
    make_records,
    served,
    token_for,
    wait_until,
)

#: Records without a client salt: the same record on a policy gives the same nullifier, and its
#: commitment differs per job, so the contract's record nullifier is what refuses a second claim.
RECORDS = make_records(12, seed=313, client_salt_every=0)


@pytest.fixture(scope="module")
def sec_policies(dev_chain: Any, ledger: Any) -> list[int]:
    ledger.add_records(RECORDS)
    return list(dev_chain.issue_policies(6))


@pytest.fixture
def sec_relay(make_relay: Any) -> Relay:
    """An API-only relay (jobs stay queued)."""
    relay: Relay = make_relay(process=False)
    return relay


@pytest.fixture(params=["sqlite", "postgresql"])
def sec_store_relay(request: pytest.FixtureRequest, make_relay: Any) -> Relay:
    """An API-only relay on each job-store backend (the client and token tests run on both)."""
    options: dict[str, Any] = {}
    if request.param == "postgresql":
        options["store_dsn"] = request.getfixturevalue("pgstore_dsn")
    relay: Relay = make_relay(process=False, **options)
    return relay


def _one_line(response: requests.Response | Any) -> str:
    body = response.json()
    assert list(body) == ["detail"], body
    detail = str(body["detail"])
    assert "\n" not in detail
    return detail


# ------------------------------------------------------------------ 1. who may call what

#: (method, path, scope it needs); ``{job}`` is a job of the owner.
ENDPOINTS = [
    ("POST", "/v1/jobs", Scope.SUBMIT),
    ("GET", "/v1/jobs/{job}", Scope.READ),
    ("GET", "/v1/jobs", Scope.READ),
    ("GET", "/healthz", Scope.ADMIN),
    ("GET", "/metrics", Scope.ADMIN),
    ("GET", "/openapi.json", Scope.READ),
]


def test_every_endpoint_refuses_missing_wrong_revoked_and_underscoped_tokens(
    sec_store_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    relay = sec_store_relay
    anonymous = client_for(relay, token=None)
    owner = token_for(relay, Scope.SUBMIT, Scope.READ)
    job = anonymous.post(
        "/v1/jobs",
        json=job_body(RECORDS[0], sec_policies[0], "matrix-owner"),
        headers=bearer(owner),
    ).json()["job_id"]
    revoked = token_for(relay)
    relay.store.revoke_client(relay.store.authenticate(revoked).id)
    rotated_away = token_for(relay)
    relay.store.rotate_client(relay.store.authenticate(rotated_away).id)
    token_id = owner.split("_")[1]
    forged = f"zkr_{token_id}_{'A' * 43}"  # a real token id with a guessed secret
    unknown = f"zkr_{'0' * 16}_{'B' * 43}"
    bad_headers: list[tuple[str, dict[str, str]]] = [
        ("no token", {}),
        ("basic auth", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("not a token", {"Authorization": "Bearer hunter2"}),
        ("unknown token", bearer(unknown)),
        ("forged secret", bearer(forged)),
        ("revoked client", bearer(revoked)),
        ("rotated-away token", bearer(rotated_away)),
    ]
    calls = [0]

    def call(method: str, url: str, headers: dict[str, str]) -> Any:
        calls[0] += 1
        body = job_body(RECORDS[1], sec_policies[1], f"matrix-{calls[0]:06d}")
        return anonymous.request(
            method, url, json=body if method == "POST" else None, headers=headers
        )

    for method, path, needed in ENDPOINTS:
        url = path.format(job=job)
        for label, headers in bad_headers:
            response = call(method, url, headers)
            assert response.status_code == 401, (method, path, label, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert _one_line(response) in (
                "missing bearer token (Authorization: Bearer zkr_…)",
                "the Authorization header must be 'Bearer <token>'",
                "invalid or revoked token",
            )
        for scope in Scope:
            token = token_for(relay, scope)
            response = call(method, url, bearer(token))
            if scope == Scope.READ and "{job}" in path:  # allowed to read, but not the owner
                assert response.status_code == 404, (method, path, scope, response.text)
            elif scope == needed or (needed == Scope.READ and scope == Scope.ADMIN):
                assert response.status_code in (200, 202), (method, path, scope, response.text)
            else:
                assert response.status_code == 403, (method, path, scope, response.text)
                assert _one_line(response) == (
                    f"client {relay.store.authenticate(token).name} lacks the "
                    f"{needed.value!r} scope this request needs"
                )
    # the owner reads its job; a read client of its own does not see it; admin does
    assert anonymous.get(f"/v1/jobs/{job}", headers=bearer(owner)).status_code == 200
    stranger = token_for(relay, Scope.READ)
    hidden = anonymous.get(f"/v1/jobs/{job}", headers=bearer(stranger))
    assert hidden.status_code == 404 and _one_line(hidden) == f"no job '{job}'"
    assert (
        anonymous.get(f"/v1/jobs/{job}", headers=bearer(token_for(relay, Scope.ADMIN))).status_code
        == 200
    )
    # nothing but the liveness probe answers without a token, and it says nothing else
    live = anonymous.get("/livez")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    assert anonymous.get("/docs").status_code == 404
    refused = [r for r in relay.store.audit_rows(10_000) if r["outcome"].startswith("401")]
    assert len(refused) >= len(ENDPOINTS) * len(bad_headers)
    assert all(r["client_id"] is None for r in refused)


def test_anonymous_callers_cannot_submit_or_read(
    sec_store_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: 300 claims with a new record id each drained a policy's coverage."""
    anonymous = client_for(sec_store_relay, token=None)
    for i in range(20):
        body = job_body(RECORDS[i % len(RECORDS)], sec_policies[2], f"drain-{i:06d}")
        assert anonymous.post("/v1/jobs", json=body).status_code == 401
    assert anonymous.get("/v1/jobs").status_code == 401
    assert all(n == 0 for n in sec_store_relay.store.counts().values())
    rows = [r for r in sec_store_relay.store.audit_rows() if r["action"] == "POST /v1/jobs"]
    assert len(rows) == 20 and {r["outcome"] for r in rows} == {
        "401 missing bearer token (Authorization: Bearer zkr_…)"
    }
    assert {r["remote"] for r in rows} == {"testclient"}


def test_each_job_records_its_client_and_the_audit_table_who_did_what(
    sec_store_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    ehr = client_for(sec_store_relay, Scope.SUBMIT, Scope.READ)
    me = sec_store_relay.store.authenticate(ehr.headers["Authorization"].split()[1])
    job = ehr.post("/v1/jobs", json=job_body(RECORDS[2], sec_policies[0], "audit-0001")).json()
    ehr.get(f"/v1/jobs/{job['job_id']}")
    assert sec_store_relay.store.get(job["job_id"]).client_id == me.id
    mine = [
        (r["action"], r["target"], r["outcome"])
        for r in sec_store_relay.store.audit_rows()
        if r["client_id"] == me.id
    ]
    assert mine == [
        ("POST /v1/jobs", job["job_id"], "queued (created)"),
        ("GET /v1/jobs/{job_id}", job["job_id"], "200"),
    ]
    assert ehr.get("/healthz").status_code == 403
    last = sec_store_relay.store.audit_rows()[-1]
    assert (last["client_id"], last["action"], last["outcome"][:3]) == (
        me.id,
        "GET /healthz",
        "403",
    )
    bad = job_body(RECORDS[2], sec_policies[0], "audit-0002", model="nope")
    assert ehr.post("/v1/jobs", json=bad).status_code == 422
    last = sec_store_relay.store.audit_rows()[-1]
    assert (last["client_id"], last["action"]) == (me.id, "POST /v1/jobs")
    assert last["outcome"].startswith("422 unknown model name or version")
    assert ehr.post("/v1/jobs", json={**bad, "features": []}).status_code == 422
    assert sec_store_relay.store.audit_rows()[-1]["outcome"] == "422 invalid request"


# ------------------------------------------------------------------ 2. binding beyond loopback


def _serve_config(tmp_path: Path, **extra: str) -> Path:
    config = tmp_path / "relay.toml"
    lines = [
        'rpc_urls = ["http://127.0.0.1:9"]',
        f'settlement = "0x{"22" * 20}"',
        f'data_dir = "{tmp_path / "data"}"',
        "[hospital_key]",
        f'keystore = "{tmp_path / "h.json"}"',
        "[submitter_key]",
        f'keystore = "{tmp_path / "s.json"}"',
    ]
    for key, value in extra.items():
        lines.insert(0, f"{key} = {value}")
    config.write_text("\n".join(lines) + "\n")
    return config


def test_a_public_bind_without_tls_or_proxy_is_refused_unless_the_loud_flag_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZKCARE_RELAY_NULLIFIER_SECRET", "ab" * 32)
    config = _serve_config(tmp_path)
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: refusing to listen on 0.0.0.0 without TLS (tls_cert_file/tls_key_file) or a "
        "trusted reverse proxy (trusted_proxies); pass --insecure-bind-i-know to do it anyway"
    )
    assert not (tmp_path / "data").exists()  # refused before anything started
    base: dict[str, Any] = {
        "rpc_urls": ["http://127.0.0.1:9"],
        "settlement": "0x" + "22" * 20,
        "hospital_key": {"keystore": tmp_path / "h.json"},
        "submitter_key": {"keystore": tmp_path / "s.json"},
        "nullifier_secret": "ab" * 32,
    }
    for host in ("0.0.0.0", "10.1.2.3", "::", "relay.example"):
        with pytest.raises(InsecureBind, match="--insecure-bind-i-know"):
            check_bind(RelaySettings(**base, host=host))
        check_bind(RelaySettings(**base, host=host), insecure=True)
        check_bind(RelaySettings(**base, host=host, trusted_proxies=["10.0.0.7"]))
        tls = {"tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
        check_bind(RelaySettings(**base, host=host, **tls))
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(RelaySettings(**base, host=host))
    with pytest.raises(ValueError, match="set both tls_cert_file and tls_key_file"):
        RelaySettings(**base, tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="is not an IP address or CIDR network"):
        RelaySettings(**base, trusted_proxies=["proxy.local"])


# ------------------------------------------------------------------ 3. who sees what


def test_clients_see_only_their_own_jobs_and_health_is_for_admins(
    sec_store_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: ``GET /v1/jobs`` listed every job's policy and logit to anyone."""
    alice = client_for(sec_store_relay, Scope.SUBMIT, Scope.READ)
    bob = client_for(sec_store_relay, Scope.SUBMIT, Scope.READ)
    admin = client_for(sec_store_relay, Scope.ADMIN)
    a = alice.post("/v1/jobs", json=job_body(RECORDS[3], sec_policies[0], "alice-0001")).json()
    b = bob.post("/v1/jobs", json=job_body(RECORDS[4], sec_policies[0], "bob-00001")).json()
    assert [j["job_id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [a["job_id"]]
    assert [j["job_id"] for j in bob.get("/v1/jobs").json()["jobs"]] == [b["job_id"]]
    assert bob.get(f"/v1/jobs/{a['job_id']}").status_code == 404
    everyone = {j["job_id"] for j in admin.get("/v1/jobs").json()["jobs"]}
    assert {a["job_id"], b["job_id"]} <= everyone
    # the same idempotency key from another client is not the first client's job
    stolen = bob.post("/v1/jobs", json=job_body(RECORDS[3], sec_policies[0], "alice-0001"))
    assert stolen.status_code == 409
    assert _one_line(stolen) == (
        "this idempotency key was already used for a different request (choose another key)"
    )
    assert a["job_id"] not in stolen.text
    # health and metrics (addresses, RPC host, errors) are for admin clients only
    for path in ("/healthz", "/metrics"):
        assert alice.get(path).status_code == 403
        assert admin.get(path).status_code == 200
    assert set(admin.get("/healthz").json()) >= {"status", "chain", "submitter", "hospital"}


# ------------------------------------------------------------------ 4. files at rest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_files_are_private(
    sec_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: ``jobs.sqlite3`` was mode 0644."""
    client = client_for(sec_relay)
    assert (
        client.post("/v1/jobs", json=job_body(RECORDS[5], sec_policies[1], "modes-001")).status_code
        == 202
    )
    data = sec_relay.settings.data_dir
    assert _mode(data) == 0o700
    for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", "relay.lock"):
        assert _mode(data / name) == 0o600, name
    assert not (data / "input.key").exists()  # the data key is not beside the store


def test_the_data_key_must_live_apart_from_the_store_and_be_private(
    tmp_path: Path, relay_models: Any, hospital: Any
) -> None:
    """Before: the data key was created in data_dir, so one backup held both."""
    from eth_account import Account

    from prover.relay.keys import RelayKeys

    keys = RelayKeys(hospital, Account.create())
    base: dict[str, Any] = {
        "rpc_urls": ["http://127.0.0.1:9"],
        "settlement": "0x" + "22" * 20,
        "hospital_key": {"keystore": tmp_path / "h.json"},
        "submitter_key": {"keystore": tmp_path / "s.json"},
        "nullifier_secret": "ab" * 32,
        "data_dir": tmp_path / "data",
    }

    def start(**extra: Any) -> Relay:
        return Relay(RelaySettings(**base, **extra), keys=keys, models=relay_models)

    with pytest.raises(RelayError, match="^no data key: set ZKCARE_RELAY_DATA_KEY"):
        start()
    with pytest.raises(ValueError, match="lies in data_dir"):
        RelaySettings(**base, data_key_file=tmp_path / "data" / "key")
    key_file = tmp_path / "keys" / "data.key"
    with pytest.raises(RelayError, match="does not exist .*keys new-data-key"):
        start(data_key_file=key_file)
    made = CliRunner().invoke(cli, ["keys", "new-data-key", str(key_file)])
    assert made.exit_code == 1 and "does not exist" in made.output  # its folder does not
    key_file.parent.mkdir()
    made = CliRunner().invoke(cli, ["keys", "new-data-key", str(key_file)])
    assert made.exit_code == 0 and _mode(key_file) == 0o600, made.output
    key_file.chmod(0o644)
    with pytest.raises(RelayError, match="is mode 0644; make it 0600"):
        start(data_key_file=key_file)
    key_file.chmod(0o600)
    relay = start(data_key_file=key_file)
    relay.store.close()
    (tmp_path / "data" / "input.key").write_text("00" * 32 + "\n")  # an older relay's default
    with pytest.raises(RelayError, match="holds the data key next to the job store"):
        start(data_key_file=key_file)


def test_finished_jobs_are_pruned_after_retention_and_their_audit_rows_stay(
    make_relay: Any, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: finished jobs were kept forever (about 8.8 KB each)."""
    relay: Relay = make_relay(process=False, job_retention_s=3600)
    client = client_for(relay)
    old = client.post("/v1/jobs", json=job_body(RECORDS[6], sec_policies[2], "prune-old")).json()
    new = client.post("/v1/jobs", json=job_body(RECORDS[7], sec_policies[2], "prune-new")).json()
    now = time.time()
    relay.store.transition(
        old["job_id"], JobState.QUEUED, JobState.FAILED, reason="t", final_at=now - 7200
    )
    relay.store.transition(
        new["job_id"], JobState.QUEUED, JobState.FAILED, reason="t", final_at=now - 60
    )
    assert relay.prune() == 1
    assert client.get(f"/v1/jobs/{old['job_id']}").status_code == 404
    assert client.get(f"/v1/jobs/{new['job_id']}").status_code == 200
    audit = relay.store.audit_rows()
    assert any(r["target"] == old["job_id"] and r["action"] == "POST /v1/jobs" for r in audit)
    assert [r["outcome"] for r in audit if r["action"] == "prune"] == ["1 finished jobs deleted"]
    assert ("GET /v1/jobs/{job_id}", old["job_id"], "404 no such job") in [
        (r["action"], r["target"], r["outcome"]) for r in audit
    ]
    assert relay.prune() == 0


# ------------------------------------------------------------------ 5. one claim per record


def test_the_same_record_on_the_same_policy_is_refused_with_409_naming_the_job(
    sec_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: accepted under a new idempotency key, proved, mined and reverted (gas burnt)."""
    client = client_for(sec_relay)
    first = client.post("/v1/jobs", json=job_body(RECORDS[8], sec_policies[3], "record-0001"))
    assert first.status_code == 202
    job_id = first.json()["job_id"]
    again = job_body(RECORDS[8], sec_policies[3], "record-0002", record_id="MRN-record-0001")
    dup = client.post("/v1/jobs", json=again)
    assert dup.status_code == 409
    assert _one_line(dup) == (
        f"policy {sec_policies[3]}: this record is already claimed by job {job_id}; "
        "a record is claimed once per policy"
    )
    other = client_for(sec_relay).post("/v1/jobs", json={**again, "idempotency_key": "record-3"})
    assert other.status_code == 409 and job_id not in other.text  # another client: no job id
    # another policy, or after the first job failed: the record may be claimed
    elsewhere = {**again, "policy_id": sec_policies[4], "idempotency_key": "record-0004"}
    assert client.post("/v1/jobs", json=elsewhere).status_code == 202
    sec_relay.store.transition(job_id, JobState.QUEUED, JobState.FAILED, reason="test")
    assert (
        client.post("/v1/jobs", json={**again, "idempotency_key": "record-0005"}).status_code == 202
    )


def _rpc(dev_chain: Any, method: str, *params: Any) -> Any:
    response = dev_chain.w3.provider.make_request(method, list(params))
    assert "error" not in response, response
    return response.get("result")


def test_a_claim_reverted_on_chain_fails_with_the_decoded_custom_error(
    make_relay: Any, client_for: Any, dev_chain: Any, sec_policies: list[int]
) -> None:
    """Two relays (separate stores, the hospital's one nullifier secret) claim one record on one
    policy while nothing is mined: both simulations pass, both transactions are mined, one
    reverts. Before: its reason was the bare ``transaction reverted on-chain``."""
    relays = [make_relay(confirmations=1), make_relay(confirmations=1)]
    clients = [client_for(r) for r in relays]
    for relay in relays:
        wait_until(lambda r=relay: r.submitter.chain_ok, 30, "the relays to reach the chain")
    policy = sec_policies[5]
    _rpc(dev_chain, "evm_setIntervalMining", 0)
    try:
        ids = []
        for i, client in enumerate(clients):
            body = job_body(RECORDS[9], policy, f"twin-{i:04d}", record_id="MRN-twin")
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        wait_until(
            lambda: all(
                r.store.get(j).state == JobState.SUBMITTED for r, j in zip(relays, ids, strict=True)
            ),
            120,
            "both claims to be broadcast",
        )
    finally:
        _rpc(dev_chain, "evm_setIntervalMining", 1)
    for relay in relays:
        assert relay.wait_idle(60), relay.store.counts()
    jobs = sorted(
        (r.store.get(j) for r, j in zip(relays, ids, strict=True)),
        key=lambda j: j.state != JobState.PAID,
    )
    assert [j.state for j in jobs] == [JobState.PAID, JobState.FAILED], jobs
    reason = jobs[1].reason or ""
    assert reason.startswith(
        f"transaction reverted on-chain: ClaimSettlementRecordAlreadyClaimed(policyId={policy}, "
    ), reason
    assert jobs[1].tx_status == 0 and jobs[1].gas_used


# ------------------------------------------------------------------ 6. chain outages


def test_outage_holds_jobs_before_proving_and_health_degrades_within_a_poll_interval(
    make_relay: Any, client_for: Any, dev_chain: Any, node: Any, ledger: Any
) -> None:
    """Before: a submission blocked 10-20 s, was accepted unchecked and proved; ``/healthz``
    said ``ok`` for about 10 s of the outage."""
    poll = 0.5
    proxy = TcpProxy(node.port).start()
    relay: Relay = make_relay(rpc_urls=[proxy.url], confirmations=1, poll_interval_s=poll)
    client = client_for(relay)
    wait_until(lambda: client.get("/healthz").json()["status"] == "ok", 30, "a healthy relay")
    records = make_records(2, seed=317, client_salt_every=0)
    ledger.add_records(records)
    (good_policy,) = dev_chain.issue_policies(1)
    proxy.stop()
    try:
        down_at = time.monotonic()
        wait_until(
            lambda: client.get("/healthz").json()["status"] == "degraded", 5, "degraded", poll=0.02
        )
        degraded_after = time.monotonic() - down_at
        assert degraded_after <= poll + 0.3, degraded_after
        health = client.get("/healthz").json()
        assert health["chain"]["reachable"] is False
        assert "zkcare_relay_chain_up 0.0" in client.get("/metrics").text

        def timed_post(
            body: dict[str, Any], url: str = "", headers: Any = None
        ) -> tuple[float, Any]:
            started = time.monotonic()
            if url:
                response = requests.post(url + "/v1/jobs", json=body, headers=headers, timeout=30)
            else:
                response = client.post("/v1/jobs", json=body)
            return time.monotonic() - started, response

        seconds, good = timed_post(job_body(records[0], good_policy, "outage-good"))
        assert seconds <= 1.0 and good.status_code == 202, (seconds, good.text)
        assert good.json()["state"] == "held"
        bad_policies = [10**9 + i for i in range(12)]  # no such policies: rejected when back
        token = client.headers["Authorization"].split()[1]
        with served(relay) as url, ThreadPoolExecutor(12) as pool:
            futures = [
                pool.submit(
                    timed_post, job_body(records[1], p, f"outage-bad-{i:04d}"), url, bearer(token)
                )
                for i, p in enumerate(bad_policies)
            ]
            started = time.monotonic()
            health_now = requests.get(url + "/healthz", headers=bearer(token), timeout=30)
            health_s = time.monotonic() - started
            results = [f.result() for f in futures]
        assert health_now.status_code == 200 and health_s <= 1.0, health_s
        assert max(s for s, _ in results) <= 1.0, [round(s, 2) for s, _ in results]
        assert {r.json()["state"] for _, r in results} == {"held"}
        bad_ids = [r.json()["job_id"] for _, r in results]
        time.sleep(1.5)
        for job_id in [good.json()["job_id"], *bad_ids]:
            job = relay.store.get(job_id)
            assert job.state == JobState.HELD and job.prove_attempts == 0  # not proved unchecked
    finally:
        proxy.start()
    wait_until(lambda: client.get("/healthz").json()["status"] == "ok", 30, "healthy again")
    assert relay.wait_idle(120), relay.store.counts()
    paid = relay.store.get(good.json()["job_id"])
    assert paid.state == (JobState.PAID if records[0].pays else JobState.DENIED), paid
    history = [to for _, to, _, _ in relay.store.history(paid.id)]
    assert history[:3] == ["held", "queued", "proving"]  # checked before proving
    for job_id, policy in zip(bad_ids, bad_policies, strict=True):
        job = relay.store.get(job_id)
        assert job.state == JobState.FAILED and job.prove_attempts == 0
        assert job.reason == (
            f"policy {policy}: no such policy on ClaimSettlement {relay.settlement.address}"
        )
        assert job.sealed_input is None
    proxy.stop()


@pytest.fixture
def sec_blackhole() -> Iterator[str]:
    """An endpoint that accepts TCP connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_hung_chain_costs_a_request_at_most_the_intake_timeout(
    make_relay: Any, client_for: Any, sec_blackhole: str
) -> None:
    relay: Relay = make_relay(
        process=False, rpc_urls=[sec_blackhole], rpc_timeout_s=10.0, poll_interval_s=60.0
    )
    client = client_for(relay)
    assert relay.probe_ok is False  # the start-up probe timed out after intake_timeout_s
    relay.probe_ok = True  # as if the chain hung right after the last good probe
    started = time.monotonic()
    response = client.post("/v1/jobs", json=job_body(RECORDS[10], 77, "hung-0001"))
    seconds = time.monotonic() - started
    assert response.status_code == 202 and response.json()["state"] == "held", response.text
    assert seconds <= relay.settings.intake_timeout_s + 0.5, seconds
    started = time.monotonic()
    assert client.get("/healthz").json()["status"] == "degraded"
    assert time.monotonic() - started <= 0.5


# ------------------------------------------------------------------ 7. error bodies


def test_error_bodies_never_echo_request_fields(
    sec_relay: Relay, client_for: Any, sec_policies: list[int]
) -> None:
    """Before: the model name and the idempotency key came back in error bodies."""
    client = client_for(sec_relay)
    model = "Model-of-Jane-Doe-1984"
    unknown = client.post(
        "/v1/jobs", json=job_body(RECORDS[11], sec_policies[0], "echo-0001", model=model)
    )
    assert unknown.status_code == 422 and model not in unknown.text
    assert _one_line(unknown).startswith("unknown model name or version; this relay proves: ")
    key = "patient-Jane-Doe-1984"
    assert (
        client.post("/v1/jobs", json=job_body(RECORDS[11], sec_policies[0], key)).status_code == 202
    )
    other = job_body(RECORDS[11], sec_policies[0], key, record_id="MRN-other")
    conflict = client.post("/v1/jobs", json=other)
    assert conflict.status_code == 409 and key not in conflict.text
    assert _one_line(conflict).startswith("this idempotency key was already used for a different")


# ------------------------------------------------------------------ TLS, mTLS, reverse proxy


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class ThrowawayCa:
    """A throwaway certificate authority issuing server and client certificates."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = _key()
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("zkcare test CA"))
            .issuer_name(_name("zkcare test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = folder / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool) -> tuple[Path, Path]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.folder / f"{name}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, _write_key(key, self.folder / f"{name}.key")


def test_tls_served_directly_with_a_self_signed_ca_and_the_cli_trusting_it(
    make_relay: Any, tmp_path: Path, sec_policies: list[int], ledger: Any
) -> None:
    ca = ThrowawayCa(tmp_path)
    cert, key = ca.issue("relay", server=True)
    relay: Relay = make_relay(process=False, tls_cert_file=cert, tls_key_file=key)
    token = token_for(relay, Scope.SUBMIT, Scope.READ)
    ledger.add_secret("client token", token)
    token_file = tmp_path / "client.token"
    token_file.write_text(token + "\n")
    with served(relay) as url:
        assert url.startswith("https://127.0.0.1:")
        assert requests.get(url + "/livez", verify=str(ca.path), timeout=10).status_code == 200
        listed = requests.get(
            url + "/v1/jobs", verify=str(ca.path), headers=bearer(token), timeout=10
        )
        assert listed.status_code == 200 and listed.json() == {"jobs": []}
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/livez", timeout=10)  # not a publicly trusted certificate
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https://", "http://") + "/livez", timeout=10)
        job = tmp_path / "job.json"
        job.write_text(json.dumps(job_body(RECORDS[0], sec_policies[4], "tls-00001")))
        auth = ["--url", url, "--token-file", str(token_file), "--cacert", str(ca.path)]
        submitted = CliRunner().invoke(cli, ["submit", str(job), *auth])
        assert submitted.exit_code == 0, submitted.output
        assert json.loads(submitted.output)["state"] == "queued"
        listed_cli = CliRunner().invoke(cli, ["list", *auth])
        assert listed_cli.exit_code == 0 and "queued" in listed_cli.output
        untrusted = CliRunner().invoke(cli, ["list", "--url", url, "--token-file", str(token_file)])
        assert untrusted.exit_code == 1 and "is unreachable (SSLError)" in untrusted.output


def test_mtls_requires_a_client_certificate_from_the_configured_ca(
    make_relay: Any, tmp_path: Path
) -> None:
    ca = ThrowawayCa(tmp_path)
    cert, key = ca.issue("relay", server=True)
    client_cert, client_key = ca.issue("hospital-ehr", server=False)
    (tmp_path / "other").mkdir()
    other = ThrowawayCa(tmp_path / "other")
    stray_cert, stray_key = other.issue("stray", server=False)
    relay: Relay = make_relay(
        process=False, tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=ca.path
    )
    token = token_for(relay, Scope.READ)
    with served(relay) as url:
        for cert_pair in (None, (str(stray_cert), str(stray_key))):
            with pytest.raises(requests.exceptions.RequestException):
                requests.get(url + "/livez", verify=str(ca.path), cert=cert_pair, timeout=10)
        mine = (str(client_cert), str(client_key))
        ok = requests.get(
            url + "/v1/jobs", verify=str(ca.path), cert=mine, headers=bearer(token), timeout=10
        )
        assert ok.status_code == 200
        # the certificate does not replace the token
        bare = requests.get(url + "/v1/jobs", verify=str(ca.path), cert=mine, timeout=10)
        assert bare.status_code == 401


def test_behind_a_trusted_proxy_forwarded_for_is_believed_from_it_only(
    make_relay: Any, tmp_path: Path
) -> None:
    """Reverse-proxy mode: the proxy (here: the test, on 127.0.0.1) terminates TLS and adds
    ``X-Forwarded-For``; the relay records the caller it names, and still wants a token."""
    behind: Relay = make_relay(process=False, trusted_proxies=["127.0.0.1/32"])
    elsewhere: Relay = make_relay(process=False, trusted_proxies=["10.9.9.9"])
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.23"}  # a client-sent hop, then the proxy's
    for relay, expected in ((behind, "198.51.100.23"), (elsewhere, "127.0.0.1")):
        token = token_for(relay, Scope.READ)
        with served(relay) as url:
            anonymous = requests.get(url + "/v1/jobs", headers=forwarded, timeout=10)
            assert anonymous.status_code == 401
            ok = requests.get(url + "/v1/jobs", headers={**forwarded, **bearer(token)}, timeout=10)
            assert ok.status_code == 200
        rows = relay.store.audit_rows()[-2:]
        assert [r["remote"] for r in rows] == [expected, expected], rows
        assert [r["outcome"][:3] for r in rows] == ["401", "200"]


# ------------------------------------------------------------------ the clients CLI


def test_clients_cli_creates_lists_rotates_and_revokes_with_immediate_effect(
    sec_relay: Relay, client_for: Any, tmp_path: Path, ledger: Any
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f'data_dir = "{sec_relay.settings.data_dir}"\n')
    runner = CliRunner(mix_stderr=False)

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["clients", *args, "--config", str(config)])

    made = run("create", "hospital-ehr", "--scope", "submit,read")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    ledger.add_secret("client token", token)
    assert made.stderr.startswith("client ") and "hospital-ehr (read,submit)" in made.stderr
    assert token.startswith("zkr_") and token not in json.dumps(sec_relay.store.audit_rows())
    store_files = sec_relay.settings.data_dir.glob("jobs.sqlite3*")
    raw = b"".join(f.read_bytes() for f in store_files)
    assert token.split("_")[1].encode() in raw  # the token id is the lookup key ...
    assert token.split("_", 2)[2].encode() not in raw  # ... the secret is stored hashed only
    api = client_for(sec_relay, token=token)
    assert api.get("/v1/jobs").status_code == 200  # the running relay sees it at once
    assert run("create", "hospital-ehr", "--scope", "read").stderr.splitlines() == [
        "Error: client name 'hospital-ehr' is taken (revoked clients keep theirs)"
    ]
    assert run("create", "x", "--scope", "root").stderr.splitlines() == [
        "Error: unknown scope 'root'; use submit, read, admin"
    ]
    token_file = tmp_path / "scraper.token"
    scraper = run("create", "prometheus", "--scope", "admin", "--token-file", str(token_file))
    assert scraper.exit_code == 0 and _mode(token_file) == 0o600, scraper.output
    ledger.add_secret("client token", token_file.read_text().strip())
    listed = run("list")
    assert listed.exit_code == 0
    line = next(x for x in listed.stdout.splitlines() if "hospital-ehr" in x)
    assert line.split()[1:] == ["hospital-ehr", "read,submit", "1", "token(s)", "active"], line

    rotated = run("rotate", "hospital-ehr")
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    ledger.add_secret("client token", new)
    assert api.get("/v1/jobs").status_code == 401  # the old token stopped working
    assert client_for(sec_relay, token=new).get("/v1/jobs").status_code == 200
    revoked = run("revoke", "hospital-ehr")
    assert revoked.exit_code == 0 and revoked.stdout.strip().endswith("hospital-ehr: revoked")
    assert client_for(sec_relay, token=new).get("/v1/jobs").status_code == 401
    with pytest.raises(AuthenticationFailed):
        sec_relay.store.authenticate(new)
    line = next(x for x in run("list").stdout.splitlines() if "hospital-ehr" in x)
    assert line.split()[-3:] == ["0", "token(s)", "revoked"], line
    assert run("revoke", "nobody").stderr.splitlines() == ["Error: no relay client 'nobody'"]
    assert run("rotate", "hospital-ehr").stderr.splitlines() == [
        "Error: client hospital-ehr is revoked; create a new client"
    ]
    missing = runner.invoke(
        cli, ["clients", "list", "--config", str(_missing_store_config(tmp_path))]
    )
    assert missing.exit_code == 1 and "no job store at" in missing.stderr


def test_clients_cli_on_a_postgresql_store_reaches_every_instance(
    make_relay: Any,
    client_for: Any,
    pgstore_dsn: str,
    tmp_path: Path,
    ledger: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay: Relay = make_relay(process=False, store_dsn=pgstore_dsn)
    config = tmp_path / "relay.toml"
    config.write_text(f'data_dir = "{tmp_path / "cli-data"}"\nstore_dsn = "{pgstore_dsn}"\n')
    runner = CliRunner(mix_stderr=False)

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["clients", *args, "--config", str(config)])

    made = run("create", "hospital-ehr", "--scope", "submit,read")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    ledger.add_secret("client token", token)
    api = client_for(relay, token=token)
    assert api.get("/v1/jobs").status_code == 200  # no SQLite file: the shared store
    assert not (tmp_path / "cli-data" / "jobs.sqlite3").exists()
    monkeypatch.setenv("ZKCARE_RELAY_STORE_DSN", pgstore_dsn)  # the environment works too
    assert runner.invoke(cli, ["clients", "revoke", "hospital-ehr"]).exit_code == 0
    assert api.get("/v1/jobs").status_code == 401
    monkeypatch.setenv("ZKCARE_RELAY_STORE_DSN", "postgresql://ops:pw-77@127.0.0.1:1/none")
    down = runner.invoke(cli, ["clients", "list"])
    assert down.exit_code == 1 and "pw-77" not in down.stderr
    assert down.stderr.splitlines()[0].startswith(
        "Error: job store postgresql://ops@127.0.0.1:1/none: cannot connect"
    )


def _missing_store_config(tmp_path: Path) -> Path:
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'data_dir = "{tmp_path / "nothing-here"}"\n')
    return config


def test_settings_name_a_wrong_proxy_and_a_half_configured_tls_in_one_line(
    tmp_path: Path,
) -> None:
    from prover.relay.settings import load_settings

    base: dict[str, Any] = {
        "rpc_urls": ["http://127.0.0.1:9"],
        "settlement": "0x" + "22" * 20,
        "hospital_key": {"keystore": tmp_path / "h.json"},
        "submitter_key": {"keystore": tmp_path / "s.json"},
        "nullifier_secret": "ab" * 32,
    }
    with pytest.raises(RelayConfigError) as wrong_proxy:
        load_settings(None, **base, trusted_proxies=["not-an-ip"])
    assert wrong_proxy.value.problems == [
        "trusted_proxies (env ZKCARE_RELAY_TRUSTED_PROXIES): Value error, 'not-an-ip' is not an "
        "IP address or CIDR network"
    ]
    with pytest.raises(RelayConfigError) as half:
        load_settings(None, **base, tls_client_ca_file=tmp_path / "ca.pem")
    assert half.value.problems == [
        "settings: Value error, tls_client_ca_file needs tls_cert_file and tls_key_file"
    ]
