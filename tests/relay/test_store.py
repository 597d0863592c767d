"""The job store's state machine: allowed transitions only, compare-and-set under races,
idempotent creation under concurrency, the queue bound, sealed input dropped on ``proved``.

Every test taking ``store`` runs twice: on SQLite and on PostgreSQL (a fresh database on the
session's throwaway cluster, ``pgstore_support.py``). SQLite's file-level checks and the
migrations of old SQLite stores come after; the PostgreSQL-only checks are in
``test_store_pg.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from prover.exceptions import (
    AuthenticationFailed,
    ClientNotFound,
    DuplicateRecord,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    QueueFull,
    RelayError,
    SealedDataError,
)
from prover.relay import store as store_module
from prover.relay.auth import Scope
from prover.relay.sealing import Sealer
from prover.relay.states import FINAL_STATES, TRANSITIONS, JobState, allowed
from prover.relay.store import MIGRATIONS, SCHEMA, SCHEMA_VERSION, Attempt, JobStore, NewJob

from .support import schema_before_instances


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A new, empty store on each backend."""
    if request.param == "sqlite":
        s = JobStore(tmp_path / "jobs.sqlite3")
        yield s
        s.close()
    else:
        yield request.getfixturevalue("make_pgstore")()


def new_job(key: str = "key-00000001", mac: str = "mac-a", **kw) -> NewJob:
    fields = dict(
        idempotency_key=key,
        request_mac=mac,
        policy_id=7,
        model="breast_cancer_lr",
        model_version=1,
        record_nullifier=hashlib.sha256(key.encode()).digest(),  # one record per key
        sealed_input=b"sealed",
    )
    fields.update(kw)
    return NewJob(**fields)


def test_sqlite_store_uses_wal_and_full_sync(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    store.close()


def test_transition_table_is_closed_and_final_states_are_terminal():
    assert set(TRANSITIONS) == set(JobState)
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
    every_other = [s for s in JobState if s not in FINAL_STATES]
    for state in every_other:  # every unfinished job can still reach a final state
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & FINAL_STATES, state


@pytest.mark.parametrize(
    "src,dst", [(a, b) for a, b in itertools.product(JobState, JobState) if a != b]
)
def test_only_allowed_transitions_are_applied(store, src, dst):
    job, _ = store.create_job(new_job(), max_queued=10)
    if src != JobState.QUEUED:
        store._execute("UPDATE jobs SET state = ? WHERE id = ?", (src.value, job.id))
    if allowed(src, dst):
        assert store.transition(job.id, src, dst).state == dst
        assert store.history(job.id)[-1][:2] == (src.value, dst.value)
    else:
        with pytest.raises(InvalidTransition, match="not allowed"):
            store.transition(job.id, src, dst)
        assert store.get(job.id).state == src


def test_compare_and_set_lets_exactly_one_racer_win(store):
    job, _ = store.create_job(new_job(), max_queued=10)
    barrier = threading.Barrier(8)

    def race(_):
        barrier.wait()
        try:
            store.transition(job.id, JobState.QUEUED, JobState.PROVING)
            return True
        except InvalidTransition as exc:
            assert "job is proving" in str(exc)
            return False

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(race, range(8)))
    assert results.count(True) == 1
    assert [h[1] for h in store.history(job.id)] == ["queued", "proving"]


def test_concurrent_creation_with_one_key_makes_one_job(store):
    barrier = threading.Barrier(12)

    def create(i):
        barrier.wait()
        try:
            job, created = store.create_job(new_job(mac="mac-a" if i % 3 else "mac-b"), 100)
            return job.id, created
        except IdempotencyConflict as exc:
            return exc.job_id, None

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(create, range(12)))
    assert len({job_id for job_id, _ in results}) == 1
    assert [c for _, c in results].count(True) == 1
    assert sum(store.counts().values()) == 1


def test_queue_bound(store):
    for i in range(3):
        store.create_job(new_job(key=f"key-{i:08d}"), max_queued=3)
    with pytest.raises(QueueFull, match=r"proving queue is full \(3 of 3 jobs\); retry in 7 s"):
        store.create_job(new_job(key="key-99999999"), max_queued=3, retry_after=7)
    store.claim_next_queued()  # one leaves the queue (proving is bounded by the pool)
    store.create_job(new_job(key="key-99999999"), max_queued=3)
    assert store.counts()[JobState.QUEUED] == 3


def test_claim_requeue_and_proof_drop_the_sealed_input(store):
    first, _ = store.create_job(new_job(key="key-00000001"), 10)
    second, _ = store.create_job(new_job(key="key-00000002"), 10)
    claimed = store.claim_next_queued()
    assert claimed.id == first.id and claimed.prove_attempts == 1
    assert store.requeue_proving("restart") == 1
    assert store.get(first.id).state == JobState.QUEUED
    again = store.claim_next_queued()
    assert again.id == first.id and again.prove_attempts == 2
    proved = store.transition(
        first.id,
        JobState.PROVING,
        JobState.PROVED,
        sealed_input=None,
        proof=b"proof",
        instances=(5, 6, 7),
        input_commitment=5,
    )
    assert proved.sealed_input is None and proved.instances == (5, 6, 7)
    with pytest.raises(ValueError, match="cannot set job columns"):  # no score is stored
        store.transition(first.id, JobState.PROVED, JobState.SIGNED, logit=-1.5)
    assert store.get(second.id).sealed_input == b"sealed"


def test_signing_persists_the_attempt_atomically(store):
    job, _ = store.create_job(new_job(), 10)
    for dst in (JobState.PROVING, JobState.PROVED):
        job = store.transition(job.id, job.state, dst)
    attempt = Attempt("0x" + "ab" * 32, job.id, 0, b"raw", 3, 1, 21000)
    signed = store.transition(
        job.id, JobState.PROVED, JobState.SIGNED, attempt=attempt, nonce=0, tx_hash=attempt.tx_hash
    )
    assert signed.nonce == 0 and store.attempts(job.id) == [attempt]
    assert store.max_nonce() == 0
    # a failed compare-and-set inserts no attempt either
    with pytest.raises(InvalidTransition):
        store.transition(
            job.id,
            JobState.PROVED,
            JobState.SIGNED,
            attempt=Attempt("0x" + "cd" * 32, job.id, 1, b"raw2", 3, 1, 21000),
        )
    assert len(store.attempts(job.id)) == 1 and store.max_nonce() == 0


def test_unknown_columns_and_jobs_are_refused(store):
    job, _ = store.create_job(new_job(), 10)
    with pytest.raises(ValueError, match="cannot set job columns"):
        store.transition(job.id, JobState.QUEUED, JobState.PROVING, state="paid")
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        store.get("nope")
    with pytest.raises(InvalidTransition, match="job is missing"):
        store.transition("nope", JobState.QUEUED, JobState.PROVING)


def test_sealer_round_trip_binds_the_job_id(tmp_path):
    sealer = Sealer.from_key_file(tmp_path / "k" / "input.key")
    assert (tmp_path / "k" / "input.key").stat().st_mode & 0o777 == 0o600
    blob = sealer.seal("job-a", [17.99, 0.0, 1001.0], [1, 2, 3, 4, 5, 6])
    assert b"17.99" not in blob and b"1001" not in blob
    assert sealer.open("job-a", blob) == ((17.99, 0.0, 1001.0), (1, 2, 3, 4, 5, 6))
    with pytest.raises(SealedDataError):
        sealer.open("job-b", blob)  # moved to another job
    with pytest.raises(SealedDataError):
        sealer.open("job-a", blob[:-1] + bytes([blob[-1] ^ 1]))  # tampered
    reloaded = Sealer.from_key_file(tmp_path / "k" / "input.key")
    assert reloaded.open("job-a", blob)[0][0] == 17.99
    with pytest.raises(SealedDataError):
        Sealer(b"\x00" * 32).open("job-a", blob)  # other key
    assert "redacted" in repr(sealer)


def _with_scores(schema: str) -> str:
    """The jobs table (version 3) with the score columns relays before version 4 kept."""
    out = schema_before_instances(schema).replace(
        "    instances TEXT,\n", "    instances TEXT,\n    logit REAL,\n    outputs TEXT,\n"
    )
    assert "logit REAL" in out
    return out


def _before_clients(schema: str) -> str:
    """The schema as relays before client authentication (version 2) wrote it."""
    out = _with_scores(schema)
    out = out.replace("    final_at REAL,\n    client_id TEXT\n", "    final_at REAL\n")
    out = (
        out.split("CREATE INDEX IF NOT EXISTS jobs_client")[0]
        + out.split("WHERE state <> 'failed';", 1)[1]
    )
    assert "client_id TEXT\n);" not in out and "jobs_record" not in out
    return out


def _columns(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    conn.close()
    return names


def test_a_store_from_before_outputs_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    old_schema = _before_clients(SCHEMA).replace("    outputs TEXT,\n", "")
    assert "outputs" not in old_schema and "logit REAL" in old_schema
    with sqlite3.connect(path) as conn:  # what the relay wrote before schema versions
        conn.executescript(old_schema)
        conn.execute(
            "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
            " model_version, record_nullifier, logit, created_at, updated_at)"
            " VALUES ('j1', 'key-00000001', 'mac', 'proved', '7', 'breast_cancer_lr', 1, x'01',"
            " -1.5, 1.0, 1.0)"
        )
    conn.close()
    store = JobStore(path)
    try:
        job = store.get("j1")
        assert job.state == JobState.PROVED and not hasattr(job, "logit")
        (version,) = store._conn().execute("PRAGMA user_version").fetchone()
        assert (
            version == SCHEMA_VERSION == 6
        )  # 5: one schema for SQLite and PostgreSQL; 6: attempt_jobs
    finally:
        store.close()
    # version 4 dropped the scores an older relay kept (decisions without scores)
    assert {"logit", "outputs"}.isdisjoint(_columns(path)) and "client_id" in _columns(path)
    assert "claimed_by" in _columns(path)  # version 5: the instance proving a job
    JobStore(path).close()  # opening a current store again changes nothing


def test_a_version_3_store_drops_its_outputs(tmp_path):
    path = tmp_path / "v3.sqlite3"
    v3 = _with_scores(SCHEMA)
    with sqlite3.connect(path) as conn:
        conn.executescript(v3)
        conn.execute(
            "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
            " model_version, record_nullifier, logit, outputs, created_at, updated_at)"
            " VALUES ('j1', 'key-00000001', 'mac', 'paid', '7', 'breast_cancer_lr', 1, x'01',"
            " -1.5, '[-1.5]', 1.0, 1.0)"
        )
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    assert {"logit", "outputs"} <= _columns(path)
    store = JobStore(path)
    try:
        assert store.get("j1").state == JobState.PAID
    finally:
        store.close()
    assert {"logit", "outputs"}.isdisjoint(_columns(path))


def test_a_store_with_two_claims_of_one_record_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as conn:  # a version-2 store in which the old bug struck
        conn.executescript(_before_clients(SCHEMA))
        for job_id, key in (("j1", "key-00000001"), ("j2", "key-00000002")):
            conn.execute(
                "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
                " model_version, record_nullifier, created_at, updated_at)"
                " VALUES (?, ?, 'mac', 'queued', '7', 'breast_cancer_lr', 1, x'01', 1.0, 1.0)",
                (job_id, key),
            )
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(RelayError, match="holds two unfailed jobs for the same record"):
        JobStore(path)
    with sqlite3.connect(path) as conn:  # unchanged: the migration rolled back
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        conn.execute("UPDATE jobs SET state = 'failed' WHERE id = 'j2'")
    conn.close()
    store = JobStore(path)  # one failed, one live: allowed
    try:
        assert store.get("j1").client_id is None and store.get("j2").state == JobState.FAILED
    finally:
        store.close()


def test_the_store_is_private_and_keeps_only_token_digests(tmp_path):
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    try:
        client, token = store.create_client("ehr", [Scope.SUBMIT])
        assert store.authenticate(token) == client
        assert oct(stat.S_IMODE((tmp_path / "data").stat().st_mode)) == "0o700"
        for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
            assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600, name
        secret = token.split("_", 2)[2]  # the secret may hold "_" itself
        raw = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
        assert secret.encode() not in raw
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw
    finally:
        store.close()


def test_a_store_from_a_newer_relay_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    JobStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RelayError, match=f"has schema version {SCHEMA_VERSION + 1}; this relay"):
        JobStore(path)


def test_a_version_4_store_gains_the_instance_columns(tmp_path):
    path = tmp_path / "v4.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema_before_instances(SCHEMA))
        conn.execute(
            "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
            " model_version, record_nullifier, created_at, updated_at)"
            " VALUES ('j1', 'key-00000001', 'mac', 'proving', '7', 'breast_cancer_lr', 1, x'01',"
            " 1.0, 1.0)"
        )
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = JobStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION and store.get("j1").claimed_by is None
        assert store.requeue_proving("restart") == 1  # claimed by no instance: re-queued
        store.heartbeat()
        assert [i[0] for i in store.instances()] == [store.instance_id]
    finally:
        store.close()


# ---------------------------------------------------------------- both backends, several instances


@pytest.fixture(params=["sqlite", "postgresql"])
def store_instances(request, tmp_path):
    """``open(instance_id)``: another store object (another relay instance) on one database."""
    if request.param == "sqlite":
        path = tmp_path / "shared.sqlite3"
        opened = []

        def open_sqlite(instance_id=None):
            opened.append(JobStore(path, instance_id=instance_id))
            return opened[-1]

        yield open_sqlite
        for s in opened:
            s.close()
    else:
        make = request.getfixturevalue("make_pgstore")
        dsn = request.getfixturevalue("pgstore_dsn")
        yield lambda instance_id=None: make(dsn, instance_id=instance_id)


def test_clients_tokens_rotation_revocation_and_audit(store):
    client, token = store.create_client("ehr", [Scope.SUBMIT, Scope.READ])
    assert store.authenticate(token) == client == store.client("ehr") == store.client(client.id)
    with pytest.raises(InvalidInput, match="client name 'ehr' is taken"):
        store.create_client("ehr", [Scope.READ])
    _same, new_token = store.rotate_client("ehr")
    with pytest.raises(AuthenticationFailed, match="invalid or revoked token"):
        store.authenticate(token)  # the old token stopped working at once
    assert store.authenticate(new_token).id == client.id
    assert store.clients() == [(client, 1)]
    revoked = store.revoke_client(client.id)
    assert revoked.revoked and store.clients() == [(revoked, 0)]
    with pytest.raises(AuthenticationFailed):
        store.authenticate(new_token)
    with pytest.raises(InvalidInput, match="is revoked; create a new client"):
        store.rotate_client("ehr")
    with pytest.raises(ClientNotFound):
        store.client("nobody")
    store.audit(client.id, "GET /v1/jobs", None, "401 revoked", "10.0.0.9")
    actions = [(r["action"], r["target"]) for r in store.audit_rows()]
    assert actions == [
        ("client.create", client.id),
        ("client.rotate", client.id),
        ("client.revoke", client.id),
        ("GET /v1/jobs", None),
    ]
    assert store.audit_rows(limit=1)[0]["remote"] == "10.0.0.9"
    assert new_token.split("_", 2)[2] not in repr(store.audit_rows())


def test_duplicate_records_and_finished_jobs_are_pruned_with_their_attempts(store):
    job, _ = store.create_job(new_job(key="key-00000001"), 10)
    with pytest.raises(DuplicateRecord):  # same record, same policy, another key
        store.create_job(new_job(key="key-00000002", record_nullifier=job.record_nullifier), 10)
    for dst in (JobState.PROVING, JobState.PROVED):
        job = store.transition(job.id, job.state, dst)
    attempt = Attempt("0x" + "ab" * 32, job.id, 0, b"raw", 3, 1, 21000)
    store.transition(job.id, JobState.PROVED, JobState.SIGNED, attempt=attempt, nonce=0)
    store.transition(job.id, JobState.SIGNED, JobState.CONFIRMED)
    store.transition(job.id, JobState.CONFIRMED, JobState.FAILED, reason="reverted")
    live, _ = store.create_job(new_job(key="key-00000003"), 10)
    assert store.prune_final(before=store.get(job.id).final_at - 1) == 0  # not old enough
    assert store.prune_final(before=store.get(job.id).final_at + 1) == 1
    assert store.find_by_key("key-00000001") is None and store.attempts(job.id) == []
    assert store.get(live.id).state == JobState.QUEUED
    assert store.history(job.id)[-1][1::2] == ("failed", "reverted")  # transitions stay
    assert store.audit_rows()[-1]["outcome"] == "1 finished jobs deleted"
    # a failed job frees its record for a new claim
    store.create_job(new_job(key="key-00000004", record_nullifier=job.record_nullifier), 10)


def test_several_instances_claim_each_queued_job_exactly_once(store_instances):
    stores = [store_instances(f"relay-{i}") for i in range(3)]
    ids = {stores[i % 3].create_job(new_job(key=f"key-{i:08d}"), 100)[0].id for i in range(30)}
    barrier = threading.Barrier(6)

    def drain(store):
        barrier.wait()
        got = []
        while (job := store.claim_next_queued()) is not None:
            assert job.state == JobState.PROVING and job.claimed_by == store.instance_id
            got.append(job.id)
        return got

    with ThreadPoolExecutor(6) as pool:  # two dispatcher threads per instance
        claimed = list(pool.map(drain, stores + stores))
    flat = [job_id for got in claimed for job_id in got]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
    assert all(stores[0].get(job_id).prove_attempts == 1 for job_id in ids)


def test_idempotency_is_shared_by_every_instance(store_instances):
    stores = [store_instances(f"relay-{i}") for i in range(3)]
    barrier = threading.Barrier(12)

    def create(i):
        barrier.wait()
        try:
            job, created = stores[i % 3].create_job(new_job(mac="mac-a" if i % 4 else "mac-b"), 100)
            return job.id, created
        except IdempotencyConflict as exc:
            return exc.job_id, None

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(create, range(12)))
    assert len({job_id for job_id, _ in results}) == 1
    assert [c for _, c in results].count(True) == 1
    assert all(sum(s.counts().values()) == 1 for s in stores)
    _client, token = stores[0].create_client("ehr", [Scope.SUBMIT])  # clients are shared too
    assert stores[2].authenticate(token).name == "ehr"


def test_the_queue_bound_holds_across_instances(store_instances):
    stores = [store_instances(f"relay-{i}") for i in range(4)]
    barrier = threading.Barrier(16)

    def create(i):
        barrier.wait()
        try:
            stores[i % 4].create_job(new_job(key=f"key-{i:08d}"), max_queued=5)
            return True
        except QueueFull:
            return False

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, range(16)))
    assert results.count(True) == 5 and stores[3].counts()[JobState.QUEUED] == 5


def test_a_new_migration_runs_on_both_backends(store_instances, monkeypatch):
    """How migration 6 (and later) is added: SCHEMA for new tables, MIGRATIONS[n] for columns."""
    store_instances().close()  # a store at the current version
    monkeypatch.setattr(
        store_module,
        "SCHEMA",
        SCHEMA + "CREATE TABLE IF NOT EXISTS probe_batches (id INTEGER PRIMARY KEY, n BLOB);\n",
    )
    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION + 1, "ALTER TABLE audit ADD COLUMN probe TEXT;")
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    upgraded = store_instances()
    assert upgraded.schema_version() == SCHEMA_VERSION + 1
    upgraded._execute("INSERT INTO probe_batches (id, n) VALUES (?, ?)", (1, b"\x00\x01"))
    upgraded._execute("UPDATE audit SET probe = ?", ("x",))
    assert upgraded._one("SELECT n FROM probe_batches WHERE id = ?", (1,))[0] == b"\x00\x01"
    upgraded.close()
    monkeypatch.undo()  # this code again: the store is newer than it
    with pytest.raises(RelayError, match=f"has schema version {SCHEMA_VERSION + 1}; this relay"):
        store_instances()
