"""The job store on PostgreSQL (psycopg 3): several relay instances share one database.

Same methods, same SQL and same schema as the SQLite store (:mod:`prover.relay.store`; ``?``
placeholders become ``%s``, the portable types are translated by
:func:`~prover.relay.store.postgres_sql`). What makes it safe for many processes at once:

- compare-and-set transitions: ``UPDATE … WHERE id = ? AND state = ?`` under READ COMMITTED
  re-checks the state once a concurrent writer commits, so exactly one racer changes the row;
- ``claim_next_queued`` picks the oldest queued job with ``FOR UPDATE SKIP LOCKED``: each job
  goes to exactly one instance, and the others take the next one instead of waiting;
- job creation, client creation, pruning and migrations take a transaction-scoped advisory
  lock, so the idempotency, record and queue-bound checks are exact across instances (the
  unique indexes on ``idempotency_key`` and ``(policy_id, record_nullifier)`` back them);
- the schema's version is the ``schema_version`` table (one row per applied version).

Connections come from a :class:`psycopg_pool.ConnectionPool` in autocommit mode; each store
method is one transaction. The DSN is a secret (it may hold a password): messages name the
server as :func:`describe_dsn` writes it, never the DSN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from prover.exceptions import InvalidInput, RelayError
from prover.relay import store as schema
from prover.relay.store import Conn, Cursor, JobStore, _statements, new_instance_id, postgres_sql

#: ``pg_advisory_xact_lock(namespace, key)``: the namespace is zkcare's, one key per section.
_LOCK_NAMESPACE = 0x7A6B6361  # "zkca"
_LOCKS = {"migrate": 1, "intake": 2, "clients": 3, "prune": 4, "keys": 5}
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    migrated_at REAL NOT NULL
)
"""


def check_dsn(dsn: str) -> dict[str, Any]:
    """The DSN's parts (``key=value`` or ``postgresql://`` URI), or :class:`InvalidInput`."""
    if dsn.startswith(("postgres://", "postgresql://")) or "=" in dsn:
        try:
            return dict(conninfo_to_dict(dsn))
        except psycopg.ProgrammingError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable"
            raise InvalidInput(f"store_dsn is not a libpq connection string: {reason}") from None
    raise InvalidInput(
        "store_dsn must be a postgresql:// URI or libpq key=value pairs "
        "(for example postgresql://relay@db.example:5432/zkcare)"
    )


def describe_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/dbname`` of a DSN: never its password."""
    try:
        parts = check_dsn(dsn)
    except InvalidInput:
        return "postgresql://(invalid DSN)"
    user = parts.get("user")
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    dbname = parts.get("dbname") or user or "postgres"
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname}"


class _Row:
    """A row readable by index, by column name, as ``dict(row)`` and by unpacking (like
    :class:`sqlite3.Row`)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def keys(self) -> list[str]:
        return list(self._index)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = [column.name for column in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}

    def make(values: Sequence[Any]) -> _Row:
        return _Row(index, values)

    return make


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConn:
    """A psycopg connection speaking the store's ``?`` SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(_placeholders(sql), parameters)


class PgJobStore(JobStore):
    """The job store in a PostgreSQL database, shared by any number of relay instances."""

    _claim_lock = " FOR UPDATE SKIP LOCKED"
    _attempt_order = "tx_hash"
    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        instance_id: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        check_dsn(dsn)
        self.where = describe_dsn(dsn)
        self.instance_id = instance_id or new_instance_id()
        try:  # one direct connection first: its error says why (the pool's only times out)
            psycopg.connect(dsn, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as exc:
            raise RelayError(
                f"job store {self.where}: cannot connect: {_first_line(exc)}"
            ) from None
        self._pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True, "row_factory": _row_factory},
            open=False,
            name="zkcare-job-store",
            timeout=30.0,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            self._migrate()
        except PoolTimeout:
            self._pool.close()
            raise RelayError(
                f"job store {self.where}: no connection within {connect_timeout:g} s"
            ) from None
        except BaseException:
            self._pool.close()
            raise

    def describe(self) -> str:
        """``postgresql://user@host:port/dbname`` (no password)."""
        return self.where

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        with self._pool.connection() as raw:
            yield _PgConn(raw)

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._pool.connection() as raw, raw.transaction():
            yield _PgConn(raw)

    def _exclusive(self, conn: Conn, what: str) -> None:
        """Hold zkcare's advisory lock ``what`` until the transaction ends (every instance)."""
        conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_NAMESPACE}, {_LOCKS[what]})")

    def schema_version(self) -> int:
        """The version recorded in ``schema_version``."""
        (version,) = self._one("SELECT MAX(version) FROM schema_version")
        return int(version)

    def _migrate(self) -> None:
        """Create the schema, or bring an older store up to the current version (one
        transaction, one instance at a time)."""
        with self._tx() as conn:
            self._exclusive(conn, "migrate")
            exists = conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()[0]
            versioned = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[
                0
            ]
            version: int | None = None
            if versioned:
                version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if exists and version is None:
                raise RelayError(
                    f"job store {self.where} has a jobs table but no schema_version: not a "
                    "zkcare store; use an empty database"
                )
            if version is not None and version > schema.SCHEMA_VERSION:
                raise RelayError(
                    f"job store {self.where} has schema version {version}; this relay "
                    f"understands up to {schema.SCHEMA_VERSION} (a newer relay wrote it)"
                )
            if version is not None and version < schema.FIRST_POSTGRES_VERSION:
                raise RelayError(
                    f"job store {self.where} has schema version {version}, older than any "
                    f"PostgreSQL store ({schema.FIRST_POSTGRES_VERSION}): not written by a relay"
                )
            if version == schema.SCHEMA_VERSION:
                # Up to date: no DDL at all. Re-running ``CREATE … IF NOT EXISTS`` would still
                # take table locks that deadlock with other instances' writes.
                return
            conn.execute(postgres_sql(_VERSION_TABLE))
            applied: list[int] = []
            if version is None:
                for statement in _statements(postgres_sql(schema.SCHEMA)):
                    conn.execute(statement)
                applied.append(schema.SCHEMA_VERSION)
            else:
                for step in range(version + 1, schema.SCHEMA_VERSION + 1):
                    for statement in _statements(postgres_sql(schema.MIGRATIONS[step])):
                        conn.execute(statement)
                    applied.append(step)
                try:
                    for statement in _statements(postgres_sql(schema.SCHEMA)):
                        conn.execute(statement)
                except errors.UniqueViolation:
                    raise RelayError(
                        f"job store {self.where} holds two unfailed jobs for the same record on "
                        "the same policy; fail or delete one before this relay can open it"
                    ) from None
            for step in applied:
                conn.execute(
                    "INSERT INTO schema_version (version, migrated_at) VALUES (?, ?)",
                    (step, time.time()),
                )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
