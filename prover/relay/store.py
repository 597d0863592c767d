"""The durable job store: one SQL transaction per state transition, on SQLite or PostgreSQL.

Every state change is ``UPDATE jobs SET state = :to … WHERE id = :id AND state = :from`` inside
one transaction (a compare-and-set: a lost race changes nothing and raises
:class:`InvalidTransition`), and appends a row to ``transitions`` in the same transaction, so a
crash at any instant leaves every job in exactly one well-defined state.

:class:`JobStore` is the embedded default: SQLite in WAL mode, ``BEGIN IMMEDIATE`` transactions,
``synchronous=FULL`` (each commit is durable before the relay acts on it: for example, the signed
transaction is on disk before it is broadcast), ``secure_delete`` (freed pages are overwritten);
the database and its WAL files are created ``0600`` in a ``0700`` folder.
:class:`prover.relay.store_pg.PgJobStore` runs the same methods and the same SQL on PostgreSQL,
where several relay instances share one database (:func:`open_store` picks the backend). Patient
input is only ever stored sealed (:mod:`prover.relay.sealing`) and dropped in the transition to
``proved``.

One schema (:data:`SCHEMA`, written with the portable types ``INTEGER``, ``REAL``, ``TEXT`` and
``BLOB``; :func:`postgres_sql` translates it) and one list of versioned :data:`MIGRATIONS`. On
SQLite the version is ``user_version``; on PostgreSQL it is the ``schema_version`` table. Opening
an older store migrates it in one transaction, and a store from a newer relay is refused.

Besides jobs the store holds the relay's clients (:mod:`prover.relay.auth`: names, scopes, token
digests, never a token), an append-only ``audit`` table of who did what (submissions, reads,
refusals, client changes, pruning), kept when finished jobs are pruned, and the relay instances
proving from it (``relay_instances``: an id and a heartbeat, so a ``proving`` job whose instance
went silent is re-queued by another). One ``(policy, record nullifier)`` has at most one job that
has not failed, and one idempotency key one job (unique indexes, shared by every instance).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
)
from prover.relay import auth
from prover.relay.auth import Client, Scope
from prover.relay.states import FINAL_STATES, IN_FLIGHT_STATES, JobState, allowed

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_mac TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    policy_id TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    record_nullifier BLOB NOT NULL,
    sealed_input BLOB,
    prove_attempts INTEGER NOT NULL DEFAULT 0,
    prove_seconds REAL,
    input_commitment TEXT,
    instances TEXT,
    proof BLOB,
    nonce INTEGER,
    tx_hash TEXT,
    attestation_expiry INTEGER,
    signature BLOB,
    broadcast_at REAL,
    block_number INTEGER,
    block_hash TEXT,
    gas_used INTEGER,
    tx_status INTEGER,
    claim_id TEXT,
    amount TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    proved_at REAL,
    submitted_at REAL,
    final_at REAL,
    client_id TEXT,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs (client_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_record
    ON jobs (policy_id, record_nullifier) WHERE state <> 'failed';
CREATE TABLE IF NOT EXISTS attempts (
    tx_hash TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    nonce INTEGER NOT NULL,
    raw_tx BLOB NOT NULL,
    max_fee INTEGER NOT NULL,
    priority_fee INTEGER NOT NULL,
    gas_limit INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id, created_at);
CREATE TABLE IF NOT EXISTS attempt_jobs (
    tx_hash TEXT NOT NULL REFERENCES attempts (tx_hash) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    PRIMARY KEY (tx_hash, job_id)
);
CREATE INDEX IF NOT EXISTS attempt_jobs_job ON attempt_jobs (job_id);
CREATE TABLE IF NOT EXISTS attempt_jobs (
    tx_hash TEXT NOT NULL REFERENCES attempts (tx_hash) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    PRIMARY KEY (tx_hash, job_id)
);
CREATE INDEX IF NOT EXISTS attempt_jobs_job ON attempt_jobs (job_id);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (id),
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    client_id TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    remote TEXT
);
CREATE TABLE IF NOT EXISTS relay_instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS key_fingerprints (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

#: The schema this code writes (SQLite: ``PRAGMA user_version``, 0 is a store from before
#: versioning; PostgreSQL: the ``schema_version`` table).
SCHEMA_VERSION = 6
#: The first version a PostgreSQL store can have (there were none before): a new store is
#: created from :data:`SCHEMA` at :data:`SCHEMA_VERSION`, and only migrations after this one ever
#: run on PostgreSQL.
FIRST_POSTGRES_VERSION = 5
#: ``version -> SQL`` bringing a store from ``version - 1`` to ``version``. Migrations up to 4 are
#: SQLite's history; from 5 on a migration runs on both backends, so it uses only portable SQL
#: and the types of :data:`SCHEMA` (translated by :func:`postgres_sql`). New tables and indexes
#: go into :data:`SCHEMA` (``IF NOT EXISTS``; applied after the migrations on both backends);
#: a migration adds columns and moves data. To add version N: append to SCHEMA, add
#: ``MIGRATIONS[N]``, set ``SCHEMA_VERSION = N``.
MIGRATIONS = {
    # 2: every output of a model (JSON list of floats); ``logit`` stays the first output.
    2: """
ALTER TABLE jobs ADD COLUMN outputs TEXT;
UPDATE jobs SET outputs = json_array(logit) WHERE logit IS NOT NULL;
""",
    # 3: each job's client; the clients, tokens and audit tables and the (policy, record)
    # unique index come from SCHEMA, applied after the migrations.
    3: """
ALTER TABLE jobs ADD COLUMN client_id TEXT;
""",
    # 4: decisions without scores: a job keeps no model output (the outcome is its state,
    # paid or denied); the logits and outputs an older relay stored are dropped.
    4: """
ALTER TABLE jobs DROP COLUMN logit;
ALTER TABLE jobs DROP COLUMN outputs;
""",
    # 5: one schema for SQLite and PostgreSQL; several relay instances on one store: each job
    # in ``proving`` names the instance proving it (the ``relay_instances`` heartbeat table
    # comes from SCHEMA).
    5: """
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
""",
    # 6: batched claims (:mod:`prover.relay.batching`): one attempt (signed transaction, its
    # row keyed by the batch's first job) covers several jobs, each with its slot in the
    # batch's ``Claim[]``; the ``attempt_jobs`` table comes from SCHEMA. No column changes.
    6: "",
}
#: How long an instance may miss heartbeats before its ``proving`` jobs go back to ``queued``.
INSTANCE_STALE_S = 30.0

#: Columns a transition may set besides ``state``/``reason``.
_SETTABLE = frozenset(
    {
        "sealed_input",
        "prove_attempts",
        "prove_seconds",
        "input_commitment",
        "instances",
        "proof",
        "nonce",
        "tx_hash",
        "attestation_expiry",
        "signature",
        "broadcast_at",
        "block_number",
        "block_hash",
        "gas_used",
        "tx_status",
        "claim_id",
        "amount",
        "proved_at",
        "submitted_at",
        "final_at",
    }
)
_INT_TEXT = frozenset({"policy_id", "input_commitment", "claim_id", "amount"})


@dataclass(frozen=True)
class Job:
    """One claim job as stored (``sealed_input`` is the only column holding patient data)."""

    id: str
    idempotency_key: str
    request_mac: str
    state: JobState
    reason: str | None
    policy_id: int
    model: str
    model_version: int
    record_nullifier: bytes
    sealed_input: bytes | None
    prove_attempts: int
    prove_seconds: float | None
    input_commitment: int | None
    instances: tuple[int, ...] | None
    proof: bytes | None
    nonce: int | None
    tx_hash: str | None
    attestation_expiry: int | None
    signature: bytes | None
    broadcast_at: float | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    tx_status: int | None
    claim_id: int | None
    amount: int | None
    created_at: float
    updated_at: float
    proved_at: float | None
    submitted_at: float | None
    final_at: float | None
    client_id: str | None = None
    claimed_by: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        """Decode a ``jobs`` row."""
        data: dict[str, Any] = dict(row)
        data["state"] = JobState(data["state"])
        for name in _INT_TEXT:
            if data[name] is not None:
                data[name] = int(data[name])
        if data["instances"] is not None:
            data["instances"] = tuple(int(v) for v in json.loads(data["instances"]))
        return cls(**data)


@dataclass(frozen=True)
class Attempt:
    """One signed transaction for a job (the first, or a fee-bumped replacement)."""

    tx_hash: str
    job_id: str
    nonce: int
    raw_tx: bytes
    max_fee: int
    priority_fee: int
    gas_limit: int
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class NewJob:
    """What the API hands the store for a new job (input already sealed)."""

    idempotency_key: str
    request_mac: str
    policy_id: int
    model: str
    model_version: int
    record_nullifier: bytes
    sealed_input: bytes
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_id: str | None = None


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _INT_TEXT:
        return str(int(value))
    if name == "instances":
        return json.dumps([str(int(v)) for v in value])
    if isinstance(value, JobState):
        return value.value
    return value


def _statements(script: str) -> list[str]:
    """The SQL statements of a script (none of ours has a ``;`` inside a statement)."""
    return [part.strip() for part in script.split(";") if part.strip()]


_PG_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)  # fmt: skip


def postgres_sql(script: str) -> str:
    """:data:`SCHEMA` or a migration in PostgreSQL's types (``INTEGER`` is 64-bit there too)."""
    for pattern, replacement in _PG_TYPES:
        script = pattern.sub(replacement, script)
    return script


def new_instance_id() -> str:
    """A fresh relay instance id (``host-<12 hex>``)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "relay"
    return f"{host}-{secrets.token_hex(6)}"


def stable_instance_id(folder: Path) -> str:
    """This relay instance's id, kept in ``folder/instance-id`` (made ``0600`` at first use), so
    a restarted instance recognizes the jobs it was proving."""
    path = folder / "instance-id"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if re.fullmatch(r"[A-Za-z0-9.-]{1,80}", value):
            return value
        raise RelayError(f"{path} does not hold a relay instance id; delete it") from None
    value = new_instance_id()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


class Cursor(Protocol):
    """What the store reads from a statement (sqlite3's cursor, psycopg's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """A connection taking ``?`` placeholders and yielding rows readable by index and name."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class JobStore:
    """The job store on SQLite (one connection per thread); the base of every backend.

    Backends differ only in the hooks :meth:`_read`, :meth:`_tx`, :meth:`_exclusive`,
    :meth:`_migrate` and :meth:`close` and two SQL fragments; every query is shared.
    ``instance_id`` names this relay instance in the jobs it claims (a stable id, kept in the
    relay's data directory, lets a restarted instance take back its own ``proving`` jobs).
    """

    #: Appended to the ``SELECT`` that picks the next queued job (row locks on PostgreSQL).
    _claim_lock = ""
    #: Tie-break of attempts created in the same instant (insertion order where there is one).
    _attempt_order = "rowid"
    #: Whether other relay instances may use the store at the same time.
    shared = False

    def __init__(self, path: Path, *, instance_id: str | None = None) -> None:
        self.path = path
        self.instance_id = instance_id or new_instance_id()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._migrate()

    def describe(self) -> str:
        """Where the store is, for messages (never a secret)."""
        return str(self.path)

    def schema_version(self) -> int:
        """The schema version the store is at (``PRAGMA user_version``)."""
        (version,) = self._one("PRAGMA user_version")
        return int(version)

    def _migrate(self) -> None:
        """Create the schema, or bring an older store up to :data:`SCHEMA_VERSION`."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
            ).fetchone()
            if version > SCHEMA_VERSION:
                raise RelayError(
                    f"job store {self.path} has schema version {version}; this relay "
                    f"understands up to {SCHEMA_VERSION} (a newer relay wrote it)"
                )
            if not exists:
                for statement in _statements(SCHEMA):
                    conn.execute(statement)
            else:
                for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for statement in _statements(MIGRATIONS[step]):
                        conn.execute(statement)
                try:
                    for statement in _statements(SCHEMA):  # indexes and tables added later
                        conn.execute(statement)
                except sqlite3.IntegrityError:
                    raise RelayError(
                        f"job store {self.path} holds two unfailed jobs for the same record on "
                        "the same policy; fail or delete one before this relay can open it"
                    ) from None
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.chmod(0o600)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        """A connection for reads outside a transaction (fetch rows before leaving)."""
        yield self._conn()

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``, one writer at a time)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _exclusive(self, conn: Conn, what: str) -> None:
        """Serialize transactions on ``what`` across every process sharing the store (SQLite's
        ``BEGIN IMMEDIATE`` already does)."""

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction (``?`` placeholders); rows changed.
        For maintenance and tests: the relay itself goes through the methods below."""
        with self._tx() as conn:
            return int(conn.execute(sql, parameters).rowcount)

    def _one(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        with self._read() as conn:
            return conn.execute(sql, parameters).fetchone()

    def _all(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self._read() as conn:
            return conn.execute(sql, parameters).fetchall()

    # ------------------------------------------------------------------ creation

    def create_job(
        self, new: NewJob, max_queued: int, retry_after: int = 1, *, held: bool = False
    ) -> tuple[Job, bool]:
        """Insert a job (``held`` when its policy could not be checked), or return the existing
        one for the same client and idempotency key.

        Returns ``(job, created)``. Raises :class:`IdempotencyConflict` if the key was used for
        a different request (or by another client), :class:`DuplicateRecord` if an unfailed job
        exists for the same record on the same policy, :class:`QueueFull` if ``max_queued`` jobs
        are already queued or held. Creations are serialized (on every instance of a shared
        store), so the checks and the queue bound are exact.
        """
        now = time.time()
        state = JobState.HELD if held else JobState.QUEUED
        with self._tx() as conn:
            self._exclusive(conn, "intake")
            row = conn.execute(
                "SELECT * FROM jobs WHERE idempotency_key = ?", (new.idempotency_key,)
            ).fetchone()
            if row is not None:
                job = Job.from_row(row)
                if job.client_id != new.client_id:
                    raise IdempotencyConflict(new.idempotency_key, "")
                if job.request_mac != new.request_mac:
                    raise IdempotencyConflict(new.idempotency_key, job.id)
                return job, False
            dup = conn.execute(
                "SELECT id, client_id FROM jobs WHERE policy_id = ? AND record_nullifier = ?"
                " AND state <> ?",
                (str(new.policy_id), new.record_nullifier, JobState.FAILED.value),
            ).fetchone()
            if dup is not None:
                same = dup["client_id"] == new.client_id
                raise DuplicateRecord(new.policy_id, dup["id"] if same else None)
            (depth,) = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)",
                (JobState.QUEUED.value, JobState.HELD.value),
            ).fetchone()
            if depth >= max_queued:
                raise QueueFull(depth, max_queued, retry_after)
            conn.execute(
                "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
                " model_version, record_nullifier, sealed_input, created_at, updated_at,"
                " client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.id,
                    new.idempotency_key,
                    new.request_mac,
                    state.value,
                    str(new.policy_id),
                    new.model,
                    new.model_version,
                    new.record_nullifier,
                    new.sealed_input,
                    now,
                    now,
                    new.client_id,
                ),
            )
            self._log(conn, new.id, None, state, now, None)
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (new.id,)).fetchone()
        return Job.from_row(row), True

    # ------------------------------------------------------------------ reads

    def get(self, job_id: str) -> Job:
        """The job with this id, or :class:`JobNotFound`."""
        row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    def find_by_key(self, idempotency_key: str) -> Job | None:
        """The job created with this idempotency key, if any."""
        row = self._one("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        return None if row is None else Job.from_row(row)

    def list_jobs(
        self,
        states: Iterable[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        client_id: str | None = None,
    ) -> list[Job]:
        """Jobs, oldest first, optionally only in ``states`` and only ``client_id``'s."""
        where: list[str] = []
        args: list[Any] = []
        if states is not None:
            names = [JobState(s).value for s in states]
            where.append(f"state IN ({','.join('?' * len(names))})")
            args += names
        if client_id is not None:
            where.append("client_id = ?")
            args.append(client_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._all(
            f"SELECT * FROM jobs{clause} ORDER BY created_at, id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [Job.from_row(r) for r in rows]

    def in_flight(self) -> list[Job]:
        """Jobs holding a nonce a node may know (signed, submitted, confirmed), by nonce."""
        names = [s.value for s in IN_FLIGHT_STATES]
        rows = self._all(
            f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(names))}) ORDER BY nonce",
            names,
        )
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[JobState, int]:
        """Number of jobs per state (every state present)."""
        out = dict.fromkeys(JobState, 0)
        for state, n in self._all("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            out[JobState(state)] = int(n)
        return out

    def attempts(self, job_id: str) -> list[Attempt]:
        """A job's signed transactions, oldest first."""
        rows = self._all(
            "SELECT tx_hash, job_id, nonce, raw_tx, max_fee, priority_fee, gas_limit, created_at"
            f" FROM attempts WHERE job_id = ? ORDER BY created_at, {self._attempt_order}",
            (job_id,),
        )
        return [Attempt(**dict(r)) for r in rows]

    def attempt_counts(self, job_ids: Iterable[str]) -> dict[str, int]:
        """How many transactions each of ``job_ids`` has signed, its batches' included (one
        query; absent = 0)."""
        ids = list(job_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._all(
            f"SELECT job_id, COUNT(*) FROM (SELECT job_id, tx_hash FROM attempts WHERE job_id IN"
            f" ({marks}) UNION SELECT job_id, tx_hash FROM attempt_jobs WHERE job_id IN ({marks}))"
            " AS signed GROUP BY job_id",
            ids + ids,
        )
        return {job_id: int(n) for job_id, n in rows}

    def max_nonce(self) -> int | None:
        """The highest nonce ever assigned to a transaction (None before the first)."""
        (value,) = self._one("SELECT MAX(nonce) FROM attempts")
        return None if value is None else int(value)

    def history(self, job_id: str) -> list[tuple[str | None, str, float, str | None]]:
        """A job's transitions: ``(from, to, at, detail)``, oldest first."""
        rows = self._all(
            "SELECT from_state, to_state, at, detail FROM transitions WHERE job_id = ?"
            " ORDER BY seq",
            (job_id,),
        )
        return [(r[0], r[1], float(r[2]), r[3]) for r in rows]

    # ------------------------------------------------------------------ transitions

    def transition(
        self,
        job_id: str,
        from_state: JobState,
        to_state: JobState,
        *,
        reason: str | None = None,
        detail: str | None = None,
        attempt: Attempt | None = None,
        **fields: Any,
    ) -> Job:
        """Atomically move ``job_id`` from ``from_state`` to ``to_state`` and set ``fields``.

        ``from_state == to_state`` updates fields of a job in that state (still a
        compare-and-set). ``attempt``, if given, is inserted in the same transaction.
        """
        if from_state != to_state and not allowed(from_state, to_state):
            raise InvalidTransition(job_id, from_state, to_state, from_state)
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"cannot set job columns {sorted(unknown)}")
        now = time.time()
        values = {name: _encode(name, v) for name, v in fields.items()}
        values["state"] = to_state.value
        values["updated_at"] = now
        if reason is not None:
            values["reason"] = reason
        if to_state.final and "final_at" not in values:
            values["final_at"] = now
        if from_state == JobState.PROVING and to_state != JobState.PROVING:
            values["claimed_by"] = None  # no instance proves it any more
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?",
                (*values.values(), job_id, from_state.value),
            )
            if cur.rowcount != 1:
                row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                raise InvalidTransition(job_id, from_state, to_state, row[0] if row else None)
            if attempt is not None:
                insert_attempt(conn, attempt)
            if from_state != to_state or detail is not None:
                self._log(conn, job_id, from_state, to_state, now, detail or reason)
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row)

    def claim_next_queued(self) -> Job | None:
        """Move the oldest queued job to ``proving``, claimed by this instance, and return it
        (None if none is queued). On a shared store each queued job goes to exactly one
        instance: the row is locked, and other instances skip it for the next one."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE state = ? ORDER BY created_at, id LIMIT 1"
                + self._claim_lock,
                (JobState.QUEUED.value,),
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            cur = conn.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, prove_attempts = prove_attempts + 1,"
                " claimed_by = ? WHERE id = ? AND state = ?",
                (JobState.PROVING.value, now, self.instance_id, row[0], JobState.QUEUED.value),
            )
            if cur.rowcount != 1:  # not reached: the row is ours (locked) in this transaction
                return None
            self._log(conn, row[0], JobState.QUEUED, JobState.PROVING, now, self.instance_id)
            job = conn.execute("SELECT * FROM jobs WHERE id = ?", (row[0],)).fetchone()
        return Job.from_row(job)

    def requeue_proving(
        self, detail: str, *, own: bool = True, stale_after: float | None = None
    ) -> int:
        """Return ``proving`` jobs nobody proves any more to ``queued``; how many.

        Those are the jobs of instances whose last heartbeat is older than ``stale_after``
        seconds (default :data:`INSTANCE_STALE_S`) or that never sent one, and with ``own`` (at
        this instance's start) its own jobs and those claimed by no instance. A store only one
        relay opens (SQLite: the relay locks its data directory) has no other instance: there
        ``own`` re-queues every job.
        """
        cutoff = time.time() - (INSTANCE_STALE_S if stale_after is None else stale_after)
        silent = "(j.claimed_by <> ? AND (i.id IS NULL OR i.seen_at < ?))"
        args: list[Any] = [JobState.PROVING.value, self.instance_id, cutoff]
        if own and not self.shared:
            silent = "1 = 1"
            args = [JobState.PROVING.value]
        elif own:
            silent += " OR j.claimed_by IS NULL OR j.claimed_by = ?"
            args.append(self.instance_id)
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT j.id FROM jobs j LEFT JOIN relay_instances i ON i.id = j.claimed_by"
                f" WHERE j.state = ? AND ({silent}) ORDER BY j.id",
                args,
            ).fetchall()
            now = time.time()
            moved = 0
            for (job_id,) in rows:
                cur = conn.execute(
                    "UPDATE jobs SET state = ?, updated_at = ?, claimed_by = NULL"
                    " WHERE id = ? AND state = ?",
                    (JobState.QUEUED.value, now, job_id, JobState.PROVING.value),
                )
                if cur.rowcount == 1:
                    moved += 1
                    self._log(conn, job_id, JobState.PROVING, JobState.QUEUED, now, detail)
        return moved

    # ------------------------------------------------------------------ instances

    def heartbeat(self) -> None:
        """Record that this instance is alive (the dispatcher calls it while it runs)."""
        now = time.time()
        host = socket.gethostname()[:255]
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE relay_instances SET seen_at = ?, host = ? WHERE id = ?",
                (now, host, self.instance_id),
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO relay_instances (id, host, started_at, seen_at)"
                    " VALUES (?, ?, ?, ?)",
                    (self.instance_id, host, now, now),
                )

    def check_keys(self, fingerprints: dict[str, str]) -> None:
        """Record the fingerprints of the keys every instance must share (the first instance
        sets them), or raise :class:`RelayError` naming the one that differs. Instances on one
        store open each other's sealed inputs and compare each other's record nullifiers."""
        now = time.time()
        with self._tx() as conn:
            self._exclusive(conn, "keys")
            for name, fingerprint in sorted(fingerprints.items()):
                row = conn.execute(
                    "SELECT fingerprint FROM key_fingerprints WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO key_fingerprints (name, fingerprint, created_at)"
                        " VALUES (?, ?, ?)",
                        (name, fingerprint, now),
                    )
                elif row[0] != fingerprint:
                    raise RelayError(
                        f"{name} differs from the one the other relay instances on job store "
                        f"{self.describe()} use; every instance of one store needs the same "
                        "data_key and nullifier_secret"
                    )

    def instances(self) -> list[tuple[str, str, float, float]]:
        """Every instance that has sent a heartbeat: ``(id, host, started_at, seen_at)``."""
        rows = self._all(
            "SELECT id, host, started_at, seen_at FROM relay_instances ORDER BY started_at, id"
        )
        return [(r[0], r[1], float(r[2]), float(r[3])) for r in rows]

    # ------------------------------------------------------------------ retention

    def prune_final(self, before: float) -> int:
        """Delete paid, denied and failed jobs (and their transactions) finished before
        ``before`` (unix time); their transitions and audit rows stay. How many."""
        names = [s.value for s in FINAL_STATES]
        marks = ",".join("?" * len(names))
        finished = f"SELECT id FROM jobs WHERE state IN ({marks}) AND final_at < ?"
        with self._tx() as conn:
            self._exclusive(conn, "prune")
            conn.execute(f"DELETE FROM attempts WHERE job_id IN ({finished})", (*names, before))
            cur = conn.execute(f"DELETE FROM jobs WHERE id IN ({finished})", (*names, before))
            pruned = int(cur.rowcount)
            if pruned:
                self._audit(conn, None, "prune", None, f"{pruned} finished jobs deleted", None)
        return pruned

    # ------------------------------------------------------------------ clients

    def create_client(self, name: str, scopes: Iterable[Scope]) -> tuple[Client, str]:
        """A new client and its first token (the only time the token is seen)."""
        auth.check_name(name)
        chosen = sorted(Scope(s).value for s in scopes)
        if not chosen:
            raise InvalidInput("a client needs at least one scope (submit, read, admin)")
        client_id = secrets.token_hex(6)
        token = auth.new_token()
        now = time.time()
        with self._tx() as conn:
            self._exclusive(conn, "clients")
            if conn.execute("SELECT 1 FROM clients WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"client name {name!r} is taken (revoked clients keep theirs)")
            conn.execute(
                "INSERT INTO clients (id, name, scopes, created_at) VALUES (?, ?, ?, ?)",
                (client_id, name, ",".join(chosen), now),
            )
            conn.execute(
                "INSERT INTO tokens (id, client_id, digest, created_at) VALUES (?, ?, ?, ?)",
                (token.token_id, client_id, token.digest, now),
            )
            self._audit(conn, None, "client.create", client_id, ",".join(chosen), None)
        return self.client(client_id), token.token

    def client(self, ref: str) -> Client:
        """The client with this id or name, or :class:`ClientNotFound`."""
        row = self._one("SELECT * FROM clients WHERE id = ? OR name = ?", (ref, ref))
        if row is None:
            raise ClientNotFound(ref)
        return _client(row)

    def clients(self) -> list[tuple[Client, int]]:
        """Every client (revoked ones too), oldest first, with its number of live tokens."""
        rows = self._all(
            "SELECT c.*, (SELECT COUNT(*) FROM tokens t WHERE t.client_id = c.id"
            " AND t.revoked_at IS NULL) AS live FROM clients c ORDER BY c.created_at, c.id"
        )
        return [(_client(r), int(r["live"])) for r in rows]

    def revoke_client(self, ref: str) -> Client:
        """Revoke a client and every token it has (at once: tokens are checked per request)."""
        client = self.client(ref)
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "UPDATE clients SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, client.id),
            )
            conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
                (now, client.id),
            )
            self._audit(conn, None, "client.revoke", client.id, "revoked", None)
        return self.client(client.id)

    def rotate_client(self, ref: str) -> tuple[Client, str]:
        """A new token for the client; its earlier tokens stop working. The new token."""
        client = self.client(ref)
        if client.revoked:
            raise InvalidInput(f"client {client.name} is revoked; create a new client")
        token = auth.new_token()
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
                (now, client.id),
            )
            conn.execute(
                "INSERT INTO tokens (id, client_id, digest, created_at) VALUES (?, ?, ?, ?)",
                (token.token_id, client.id, token.digest, now),
            )
            self._audit(conn, None, "client.rotate", client.id, "new token", None)
        return client, token.token

    def authenticate(self, token: str) -> Client:
        """The live client holding ``token``, or :class:`AuthenticationFailed`."""
        token_id, secret = auth.split_token(token)
        row = self._one(
            "SELECT t.digest, t.revoked_at AS token_revoked, c.* FROM tokens t"
            " JOIN clients c ON c.id = t.client_id WHERE t.id = ?",
            (token_id,),
        )
        if (
            row is None
            or not auth.matches(secret, row["digest"])
            or row["token_revoked"] is not None
            or row["revoked_at"] is not None
        ):
            raise AuthenticationFailed("invalid or revoked token")
        return _client(row)

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        client_id: str | None,
        action: str,
        target: str | None,
        outcome: str,
        remote: str | None = None,
    ) -> None:
        """Append one audit row (who, what, on what, how it ended, from where)."""
        with self._tx() as conn:
            self._audit(conn, client_id, action, target, outcome, remote)

    def audit_rows(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The latest audit rows, oldest first."""
        rows = self._all(
            "SELECT * FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT ?) AS latest ORDER BY seq",
            (limit,),
        )
        return [dict(r) for r in rows]

    @staticmethod
    def _audit(
        conn: Conn,
        client_id: str | None,
        action: str,
        target: str | None,
        outcome: str,
        remote: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO audit (at, client_id, action, target, outcome, remote)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), client_id, action, target, outcome[:300], remote),
        )

    @staticmethod
    def _log(
        conn: Conn,
        job_id: str,
        from_state: JobState | None,
        to_state: JobState,
        at: float,
        detail: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO transitions (job_id, from_state, to_state, at, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (job_id, from_state.value if from_state else None, to_state.value, at, detail),
        )


def insert_attempt(conn: Conn, attempt: Attempt) -> None:
    """Persist the signed transaction ``attempt`` (inside the caller's SQL transaction)."""
    conn.execute(
        "INSERT INTO attempts (tx_hash, job_id, nonce, raw_tx, max_fee, priority_fee,"
        " gas_limit, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            attempt.tx_hash,
            attempt.job_id,
            attempt.nonce,
            attempt.raw_tx,
            attempt.max_fee,
            attempt.priority_fee,
            attempt.gas_limit,
            attempt.created_at,
        ),
    )


def _client(row: Any) -> Client:
    return Client(
        id=row["id"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"].split(",") if s),
        created_at=float(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )


def _private(path: Path) -> None:
    """Create the database file ``0600`` (SQLite gives its WAL files the same mode), or make an
    existing one ``0600``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
    else:
        os.close(fd)


def open_store(
    path: Path,
    dsn: str | None = None,
    *,
    instance_id: str | None = None,
    pool_size: int = 10,
) -> JobStore:
    """The SQLite store at ``path``, or with ``dsn`` the PostgreSQL store it names (shared by
    every relay instance given the same DSN)."""
    if dsn is None:
        return JobStore(path, instance_id=instance_id)
    from prover.relay.store_pg import PgJobStore

    return PgJobStore(dsn, instance_id=instance_id, pool_size=pool_size)
