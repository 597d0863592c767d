"""Several relay instances on one PostgreSQL job store (issue 11): any instance accepts jobs,
idempotency keys, record dedupe and clients are shared, each queued job is proved by exactly
one instance, and an instance that cannot open the others' sealed inputs is refused.

Each instance has its own data directory (its lock, work files and instance id) and the same
``store_dsn``, ``data_key`` and nullifier secret. Only the holder of the submitter lease
(:mod:`prover.relay.lease`) signs; failover is tested in ``tests/scale``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from prover.exceptions import RelayError
from prover.relay import dispatcher as dispatcher_module
from prover.relay import store as store_module
from prover.relay.service import Relay
from prover.relay.states import JobState

from .pgstore_support import PgStoreServer
from .support import job_body, make_records, token_for, wait_until

RECORDS = make_records(8, seed=717, client_salt_every=0)


@pytest.fixture(scope="module")
def multi_policies(dev_chain: Any, ledger: Any) -> list[int]:
    ledger.add_records(RECORDS)
    return list(dev_chain.issue_policies(len(RECORDS)))


@pytest.fixture
def multi_instances(
    make_relay: Any, pgstore_server: PgStoreServer, pgstore_dsn: str, ledger: Any
) -> Iterator[Any]:
    """``make(**kw)``: another relay instance on this test's PostgreSQL store. The database's
    files go to the privacy scan (after a checkpoint: every row is on disk)."""
    data_key = secrets.token_hex(32)
    ledger.add_secret("shared data key", data_key)

    def make(**kw: Any) -> Relay:
        relay: Relay = make_relay(store_dsn=pgstore_dsn, data_key=data_key, **kw)
        return relay

    yield make
    pgstore_server.psql(pgstore_dsn, "CHECKPOINT")
    [(oid,)] = pgstore_server.psql(
        pgstore_dsn, "SELECT oid FROM pg_database WHERE datname = current_database()"
    )
    ledger.add_path("PostgreSQL job store", pgstore_server.cluster.data / "base" / str(oid))


def test_any_instance_accepts_jobs_and_shares_keys_records_and_clients(
    multi_instances: Any,
    make_relay: Any,
    pgstore_dsn: str,
    client_for: Any,
    multi_policies: list[int],
) -> None:
    a = multi_instances(process=False)
    b = multi_instances(process=False)  # a second instance: not refused by a's data-dir lock
    assert a.store.shared and a.instance_id != b.instance_id
    token = token_for(a)  # created through one instance, valid on every one
    on_a, on_b = client_for(a, token=token), client_for(b, token=token)
    body = job_body(RECORDS[0], multi_policies[0], "multi-0001")
    first = on_a.post("/v1/jobs", json=body)
    assert first.status_code == 202 and first.json()["created"] is True
    job_id = first.json()["job_id"]
    replay = on_b.post("/v1/jobs", json=body)  # the client retries against the other instance
    assert replay.status_code == 202
    assert replay.json() == {**first.json(), "created": False}
    changed = on_b.post("/v1/jobs", json={**body, "features": RECORDS[1].features})
    assert changed.status_code == 409 and "multi-0001" not in changed.text
    again = job_body(RECORDS[0], multi_policies[0], "multi-0002", record_id="MRN-multi-0001")
    dup = on_b.post("/v1/jobs", json=again)
    assert dup.status_code == 409 and dup.json()["detail"] == (
        f"policy {multi_policies[0]}: this record is already claimed by job {job_id}; "
        "a record is claimed once per policy"
    )
    assert on_b.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
    assert sum(b.store.counts().values()) == 1
    # a client revoked through one instance is refused by the others at once
    b.store.revoke_client(b.store.authenticate(token).id)
    assert on_a.get(f"/v1/jobs/{job_id}").status_code == 401
    # who may not join: an instance with another data key (it could not open sealed inputs)
    with pytest.raises(RelayError, match="data_key differs from the one the other relay instanc"):
        make_relay(process=False, store_dsn=pgstore_dsn)


@pytest.mark.slow
def test_each_queued_job_is_proved_by_exactly_one_instance_and_paid_once(
    multi_instances: Any,
    client_for: Any,
    dev_chain: Any,
    multi_policies: list[int],
) -> None:
    a = multi_instances()
    b = multi_instances()
    # One submitter lease in the shared database: exactly one of them signs.
    leases = (a.lease, b.lease)
    assert None not in leases
    wait_until(lambda: any(lease.holding for lease in leases), 20, "a lease holder")
    active, standby = (a, b) if a.lease.holding else (b, a)
    assert not standby.lease.holding
    token = token_for(a)
    clients = [client_for(a, token=token), client_for(b, token=token)]
    job_ids = []
    for i, (record, policy) in enumerate(zip(RECORDS, multi_policies, strict=True)):
        response = clients[i % 2].post("/v1/jobs", json=job_body(record, policy, f"many-{i:04d}"))
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["job_id"])
    assert active.wait_idle(timeout=240), active.store.counts()
    claimers = []
    for job_id, record in zip(job_ids, RECORDS, strict=True):
        job = b.store.get(job_id)
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), job.reason
        assert job.prove_attempts == 1 and job.claimed_by is None
        proving = [h for h in b.store.history(job_id) if h[1] == JobState.PROVING.value]
        assert len(proving) == 1  # claimed once, by one instance (named in the transition)
        claimers.append(proving[0][3])
    assert set(claimers) == {a.instance_id, b.instance_id}  # both dispatchers proved
    assert a.dispatcher is not None and b.dispatcher is not None
    assert a.dispatcher.proved + b.dispatcher.proved == len(RECORDS)
    # one settlement event per policy, from the one active submitter, nonces contiguous
    events = dev_chain.claim_events()
    assert sorted(
        args["policyId"] for _name, args, _tx in events if args["policyId"] in set(multi_policies)
    ) == sorted(multi_policies)
    submitter = active.keys.submitter.address
    assert dev_chain.w3.eth.get_transaction_count(submitter) == len(RECORDS)
    assert sorted(a.store.get(j).nonce for j in job_ids) == list(range(len(RECORDS)))
    if standby.keys.submitter.address != submitter:
        assert dev_chain.w3.eth.get_transaction_count(standby.keys.submitter.address) == 0


@pytest.mark.slow
def test_a_silent_instances_proving_job_is_taken_over_and_paid_once(
    multi_instances: Any,
    make_pgstore: Any,
    pgstore_dsn: str,
    client_for: Any,
    dev_chain: Any,
    multi_policies: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatcher_module, "SWEEP_INTERVAL_S", 0.3)
    monkeypatch.setattr(store_module, "INSTANCE_STALE_S", 2.0)
    intake = multi_instances(process=False)
    client = client_for(intake)
    record, (policy,) = RECORDS[5], dev_chain.issue_policies(1)  # its own policy: one claim
    job_id = client.post("/v1/jobs", json=job_body(record, policy, "ghost-0001")).json()["job_id"]
    ghost = make_pgstore(pgstore_dsn, instance_id="ghost")  # an instance that will go silent
    ghost.heartbeat()
    assert ghost.claim_next_queued().id == job_id
    beating = threading.Event()

    def heartbeats() -> None:
        while not beating.wait(0.2):
            ghost.heartbeat()

    pulse = threading.Thread(target=heartbeats, daemon=True)
    pulse.start()
    worker = multi_instances()  # starts, sweeps every 0.3 s: the live ghost's job is not its own
    time.sleep(3.0)
    assert worker.store.get(job_id).claimed_by == "ghost"
    beating.set()  # the ghost stops (kill -9: no heartbeat, no result)
    pulse.join()
    assert worker.wait_idle(timeout=120), worker.store.counts()
    job = worker.store.get(job_id)
    assert job.state == (JobState.PAID if record.pays else JobState.DENIED)
    states = [(h[1], h[3]) for h in worker.store.history(job_id)]
    assert states[:4] == [
        ("queued", None),
        ("proving", "ghost"),
        ("queued", "its relay instance went silent"),
        ("proving", worker.instance_id),
    ]
    assert job.prove_attempts == 2 and worker.store.attempts(job_id)[0].nonce == 0
    events = [args for _n, args, _tx in dev_chain.claim_events() if args["policyId"] == policy]
    assert len(events) == 1
