"""Fixtures for the scale-out tests: a throwaway PostgreSQL per module (``tests/pgcluster.py``).

The two-relay and chaos tests (``test_failover.py``) add anvil, relay processes and prover hosts
on top of it; every fixture name here starts with ``scale_`` (ape tracks fixtures by name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pgcluster import PgCluster

from prover.anvil import Anvil
from prover.relay.devchain import DevChain, deploy_dev_chain
from prover.zk.circuit import Bundle

from .support import RelayFleet, fresh_database, new_submitter


@pytest.fixture(scope="module")
def scale_pg() -> Iterator[PgCluster]:
    """A PostgreSQL 15 cluster on a free loopback port, deleted after the module."""
    with PgCluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def scale_node() -> Iterator[Anvil]:
    """A fresh anvil (0.5 s blocks) per module."""
    with Anvil(block_time=0.5) as anvil:
        yield anvil


@pytest.fixture(scope="module")
def scale_hospital() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture(scope="module")
def scale_chain(
    scale_node: Anvil, diagnostic_bundle: Bundle, scale_hospital: LocalAccount
) -> DevChain:
    """The real verifier, registry and a ClaimSettlement trusting the test hospital."""
    return deploy_dev_chain(scale_node.url, diagnostic_bundle, scale_hospital.address)


@pytest.fixture
def scale_fleet(
    tmp_path: Path,
    scale_pg: PgCluster,
    scale_node: Anvil,
    scale_chain: DevChain,
    diagnostic_bundle: Bundle,
    scale_hospital: LocalAccount,
) -> Iterator[Callable[..., RelayFleet]]:
    """``make(engine=None)``: a fleet of relay processes on this module's chain with a fresh
    database on the module's cluster (the store, the lease and the engine's tables) and a fresh
    funded submitter key (a store's nonces belong to one key); all stopped at the end."""
    fleets: list[RelayFleet] = []

    def make(engine: dict[str, Any] | None = None) -> RelayFleet:
        fleet = RelayFleet(
            tmp=tmp_path,
            dsn=fresh_database(scale_pg),
            node_url=scale_node.url,
            settlement=scale_chain.settlement.address,
            bundle=diagnostic_bundle.path,
            hospital=scale_hospital,
            submitter=new_submitter(scale_chain),
            engine=engine,
        )
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()
