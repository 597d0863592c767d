"""Fixtures for the scale-out tests: a throwaway PostgreSQL per module (``tests/pgcluster.py``).

The two-relay and chaos tests (``test_failover.py``) add anvil, relay processes and prover hosts
on top of it; every fixture name here starts with ``scale_`` (ape tracks fixtures by name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgcluster import PgCluster


@pytest.fixture(scope="module")
def scale_pg() -> Iterator[PgCluster]:
    """A PostgreSQL 15 cluster on a free loopback port, deleted after the module."""
    with PgCluster() as pg:
        yield pg
