"""PostgreSQL-backed job stores for tests: one throwaway cluster per session, a fresh database
per test.

Use from any test folder::

    from relay.pgstore_support import pgstore_server, pgstore_dsn, make_pgstore  # fixtures

- ``pgstore_server`` (session): a :class:`PgStoreServer` on a throwaway PostgreSQL 15 cluster
  (``tests/pgcluster.py``: initdb + pg_ctl on a free loopback port), stopped at the end;
- ``pgstore_dsn`` (function): the DSN of a new, empty database on it (give it to a relay as
  ``store_dsn=…``, or to :class:`~prover.relay.store_pg.PgJobStore`);
- ``make_pgstore`` (function): ``make_pgstore(dsn=None, **kw)`` opens a ``PgJobStore`` (on a new
  database unless ``dsn`` is given: several stores on one DSN are several relay instances) and
  closes it after the test.

Every database made is dropped when the session's cluster stops (the whole cluster is deleted).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pgcluster import PgCluster

from prover.relay.store_pg import PgJobStore

_numbers = itertools.count(1)


class PgStoreServer:
    """A running throwaway cluster that hands out empty databases."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster

    def dsn(self, dbname: str) -> str:
        """The DSN of database ``dbname`` on the cluster."""
        return f"host=127.0.0.1 port={self.cluster.port} user={self.cluster.user} dbname={dbname}"

    def new_database(self, prefix: str = "store") -> str:
        """Create an empty database; its DSN."""
        name = f"{prefix}_{next(_numbers)}"
        with psycopg.connect(self.cluster.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def psql(self, dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on ``dsn`` outside any store (as an operator would); its rows."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []


@pytest.fixture(scope="session")
def pgstore_server() -> Iterator[PgStoreServer]:
    """A throwaway PostgreSQL cluster for job stores (the whole session)."""
    with PgCluster() as cluster:
        yield PgStoreServer(cluster)


@pytest.fixture
def pgstore_dsn(pgstore_server: PgStoreServer) -> str:
    """The DSN of a new, empty database."""
    return pgstore_server.new_database()


@pytest.fixture
def make_pgstore(pgstore_server: PgStoreServer) -> Iterator[Callable[..., PgJobStore]]:
    """Open ``PgJobStore``s (closed after the test)."""
    opened: list[PgJobStore] = []

    def make(dsn: str | None = None, **kw: Any) -> PgJobStore:
        store = PgJobStore(dsn or pgstore_server.new_database(), **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
