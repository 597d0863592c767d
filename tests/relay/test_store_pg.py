"""What only the PostgreSQL store has: its schema_version table and translated types, claims
race-safe across processes, re-queueing that spares live instances, DSN errors in one line
without the password. The store's whole behaviour runs on it in ``test_store.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prover.exceptions import InvalidInput, RelayError
from prover.relay.states import JobState
from prover.relay.store import SCHEMA_VERSION, postgres_sql
from prover.relay.store_pg import PgJobStore, check_dsn, describe_dsn

from .pgstore_support import PgStoreServer
from .test_store import new_job

ROOT = Path(__file__).resolve().parents[2]

_CLAIMER = """
import json, sys
from prover.relay.store_pg import PgJobStore
store = PgJobStore(sys.argv[1], instance_id=sys.argv[2], pool_size=2)
print("ready", flush=True)
sys.stdin.readline()  # every process starts claiming at once
got = []
while (job := store.claim_next_queued()) is not None:
    got.append([job.id, job.claimed_by])
store.close()
print(json.dumps(got), flush=True)
"""


def test_pg_schema_is_versioned_in_a_table_with_translated_types(
    make_pgstore, pgstore_server: PgStoreServer, pgstore_dsn: str
) -> None:
    store = make_pgstore(pgstore_dsn)
    assert store.schema_version() == SCHEMA_VERSION
    assert pgstore_server.psql(pgstore_dsn, "SELECT version FROM schema_version") == [
        (SCHEMA_VERSION,)
    ]
    types = dict(
        pgstore_server.psql(
            pgstore_dsn,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'jobs'",
        )
    )
    assert types["record_nullifier"] == "bytea" and types["created_at"] == "double precision"
    assert types["nonce"] == "bigint" and types["claimed_by"] == "text"
    assert "AUTOINCREMENT" not in postgres_sql("seq INTEGER PRIMARY KEY AUTOINCREMENT")
    PgJobStore(pgstore_dsn).close()  # reopening a current store changes nothing
    assert pgstore_server.psql(pgstore_dsn, "SELECT COUNT(*) FROM schema_version") == [(1,)]


def test_a_database_that_is_not_a_store_or_is_newer_is_refused(
    pgstore_server: PgStoreServer,
) -> None:
    foreign = pgstore_server.new_database("foreign")
    pgstore_server.psql(foreign, "CREATE TABLE jobs (id TEXT)")
    with pytest.raises(RelayError, match="has a jobs table but no schema_version: not a zkcare"):
        PgJobStore(foreign)
    newer = pgstore_server.new_database("newer")
    PgJobStore(newer).close()
    pgstore_server.psql(newer, "INSERT INTO schema_version VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RelayError, match=f"has schema version {SCHEMA_VERSION + 1}; this relay"):
        PgJobStore(newer)


def test_claims_are_race_safe_across_processes(make_pgstore, pgstore_dsn: str) -> None:
    feeder = make_pgstore(pgstore_dsn, instance_id="feeder")
    ids = {feeder.create_job(new_job(key=f"key-{i:08d}"), 100)[0].id for i in range(40)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, pgstore_dsn, f"proc-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    claims = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    flat = [job_id for got in claims for job_id, _ in got]
    assert sorted(flat) == sorted(ids)  # each job claimed by exactly one process
    for n, got in enumerate(claims):
        assert all(owner == f"proc-{n}" for _, owner in got)
        assert all(feeder.get(job_id).claimed_by == f"proc-{n}" for job_id, _ in got)


def test_requeue_spares_live_instances_and_takes_over_silent_ones(
    make_pgstore, pgstore_dsn: str
) -> None:
    alive = make_pgstore(pgstore_dsn, instance_id="alive")
    silent = make_pgstore(pgstore_dsn, instance_id="silent")
    starting = make_pgstore(pgstore_dsn, instance_id="starting")
    for i in range(3):
        alive.create_job(new_job(key=f"key-{i:08d}"), 10)
    alive.heartbeat()
    silent.heartbeat()
    a = alive.claim_next_queued()
    s = silent.claim_next_queued()
    mine = starting.claim_next_queued()  # claimed in an earlier life of "starting"
    assert a and s and mine
    # "silent" stops sending heartbeats
    silent._execute(
        "UPDATE relay_instances SET seen_at = ? WHERE id = ?", (time.time() - 60, "silent")
    )
    assert starting.requeue_proving("restarted") == 2  # its own job and the silent one's
    assert starting.get(a.id).state == JobState.PROVING and starting.get(a.id).claimed_by == "alive"
    for job_id in (s.id, mine.id):
        job = starting.get(job_id)
        assert job.state == JobState.QUEUED and job.claimed_by is None
    assert starting.history(s.id)[-1][1::2] == ("queued", "restarted")
    # a sweep by another live instance (own=False) leaves its own and the live one's alone
    again = alive.claim_next_queued()
    assert again is not None
    assert alive.requeue_proving("sweep", own=False) == 0
    assert {i[0] for i in alive.instances()} == {"alive", "silent"}


def test_dsn_errors_are_one_line_and_never_show_the_password(pgstore_server: PgStoreServer) -> None:
    with pytest.raises(InvalidInput, match="must be a postgresql:// URI or libpq key=value"):
        check_dsn("jobs.sqlite3")
    with pytest.raises(InvalidInput, match="is not a libpq connection string"):
        check_dsn("host=127.0.0.1 port")
    secret_dsn = "postgresql://relay:hunter2-secret@127.0.0.1:1/zkcare"
    assert describe_dsn(secret_dsn) == "postgresql://relay@127.0.0.1:1/zkcare"
    with pytest.raises(RelayError) as refused:
        PgJobStore(secret_dsn, connect_timeout=2)
    message = str(refused.value)
    assert message.startswith("job store postgresql://relay@127.0.0.1:1/zkcare: cannot connect")
    assert "hunter2" not in message and "\n" not in message
    missing = pgstore_server.dsn("no_such_database")
    with pytest.raises(RelayError, match='database "no_such_database" does not exist'):
        PgJobStore(missing)
