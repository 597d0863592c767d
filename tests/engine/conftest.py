"""Fixtures for the prover-engine tests: a throwaway PostgreSQL, prover hosts, relays on anvil.

Each module gets its own PostgreSQL cluster (``tests/pgcluster.py``) and anvil chain. Prover
hosts are ``python -m prover.relay.engine prover`` subprocesses, each in its own process group
(``start_new_session``), so ``kill -9`` of a host takes its proving processes with it. A tap
thread records every NOTIFY on the broker's channels and snapshots the broker's tables while
the tests run (``procrastinate_jobs`` rows are deleted once done), for the privacy scan.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pgcluster import PgCluster
from relay.support import MODEL, PrivacyLedger

from prover.anvil import Anvil
from prover.relay.devchain import DevChain, deploy_dev_chain
from prover.relay.engine import EngineSettings
from prover.relay.engine_common import RESULTS_CHANNEL, write_key_file
from prover.relay.keys import RelayKeys
from prover.relay.service import Relay, ServedModel, resolve_models
from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings
from prover.zk.circuit import Bundle

ROOT = Path(__file__).resolve().parents[2]
#: Broker tables whose rows could carry task data.
BROKER_TABLES = (
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_workers",
    "zkcare_engine_results",
    "zkcare_engine_bundles",
)


@dataclass
class BrokerTap:
    """NOTIFY payloads and table snapshots of the broker, collected while the tests run."""

    dsn: str
    notifications: list[tuple[str, str]] = field(default_factory=list)
    snapshots: list[tuple[str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            listened: set[str] = set()
            while not self._stop.is_set():
                queues = [
                    r[0] for r in conn.execute("SELECT DISTINCT queue_name FROM procrastinate_jobs")
                ]
                for channel in [
                    "procrastinate_any_queue_v1",
                    RESULTS_CHANNEL,
                    *(f"procrastinate_queue_v1#{q}" for q in queues),
                ]:
                    if channel not in listened:
                        conn.execute(f'LISTEN "{channel}"')
                        listened.add(channel)
                self.snapshot(conn)
                for note in conn.notifies(timeout=0.2, stop_after=50):
                    self.notifications.append((note.channel, note.payload))

    def snapshot(self, conn: Any) -> None:
        for table in BROKER_TABLES:
            for row in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t"):
                self.snapshots.append((table, row[0]))

    def stop(self) -> None:
        self._stop.set()


@dataclass
class ProverHost:
    """One prover host: a process group running the prover command."""

    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"prover exited {self.proc.returncode}: {self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"prover not ready: {self.tail()}")

    def kill9(self) -> None:
        """``kill -9`` the whole host (prover and its proving processes)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text()[-n:]


@pytest.fixture(scope="module")
def engine_pg() -> Iterator[PgCluster]:
    with PgCluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def engine_tap(engine_pg: PgCluster, engine_key: tuple[Path, str]) -> Iterator[BrokerTap]:
    import asyncio

    from prover.relay.engine_common import ensure_schema

    asyncio.run(ensure_schema(engine_pg.dsn))
    tap = BrokerTap(engine_pg.dsn)
    thread = threading.Thread(target=tap.run, daemon=True)
    thread.start()
    yield tap
    tap.stop()
    thread.join(10)


@pytest.fixture(scope="module")
def engine_ledger() -> PrivacyLedger:
    return PrivacyLedger()


@pytest.fixture(scope="module")
def engine_log(
    tmp_path_factory: pytest.TempPathFactory, engine_ledger: PrivacyLedger
) -> Iterator[Path]:
    """Every in-process log record (relay, engine) of the module, in one file (scanned)."""
    path = tmp_path_factory.mktemp("engine-logs") / "relay.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    engine_ledger.add_path("in-process logs", path)
    yield path
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


@pytest.fixture(scope="module")
def engine_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The provers' key file and its public key (what the relay seals for)."""
    path = tmp_path_factory.mktemp("engine-key") / "prover.key"
    return path, write_key_file(path)


@pytest.fixture(scope="module")
def engine_models(
    diagnostic_bundle: Bundle, engine_ledger: PrivacyLedger
) -> dict[tuple[str, int], ServedModel]:
    models = resolve_models([ModelConfig(name=MODEL, bundle=diagnostic_bundle.path)])
    for (name, _), model in models.items():
        engine_ledger.add_model(name, model.loaded)
    return models


@pytest.fixture(scope="module")
def engine_hospital() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture(scope="module")
def engine_node() -> Iterator[Anvil]:
    with Anvil(block_time=0.5) as anvil:
        yield anvil


@pytest.fixture(scope="module")
def engine_chain(
    engine_node: Anvil, diagnostic_bundle: Bundle, engine_hospital: LocalAccount
) -> DevChain:
    return deploy_dev_chain(engine_node.url, diagnostic_bundle, engine_hospital.address)


ProverFactory = Callable[..., ProverHost]


@pytest.fixture
def engine_provers(
    engine_pg: PgCluster,
    engine_key: tuple[Path, str],
    diagnostic_bundle: Bundle,
    engine_ledger: PrivacyLedger,
    tmp_path: Path,
) -> Iterator[ProverFactory]:
    """Start prover hosts (``start(bundles=…, key=…, wait=True)``); all killed at the end."""
    hosts: list[ProverHost] = []

    def start(
        *, bundles: Path | None = None, key: Path | None = None, wait: bool = True
    ) -> ProverHost:
        log = tmp_path / f"prover-{len(hosts)}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ZKCARE_ENGINE_DSN": engine_pg.dsn}
        proc = subprocess.Popen(
            [sys.executable, "-m", "prover.relay.engine", "prover",
             "--bundles", str(bundles or diagnostic_bundle.path),
             "--key", str(key or engine_key[0]), "--concurrency", "1",
             "--heartbeat-s", "0.5", "--poll-s", "0.5"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        host = ProverHost(proc, log)
        hosts.append(host)
        engine_ledger.add_path(f"prover log {len(hosts)}", log)
        if wait:
            host.wait_ready()
        return host

    yield start
    for host in hosts:
        host.kill9()


@pytest.fixture
def engine_relay(
    engine_node: Anvil,
    engine_chain: DevChain,
    engine_hospital: LocalAccount,
    engine_models: dict[tuple[str, int], ServedModel],
    engine_pg: PgCluster,
    engine_key: tuple[Path, str],
    engine_tap: BrokerTap,
    engine_ledger: PrivacyLedger,
    engine_log: Path,
    tmp_path: Path,
) -> Iterator[Callable[..., Relay]]:
    """Start an in-process relay whose ``[engine]`` settings point at this module's broker."""
    relays: list[Relay] = []

    def make(**engine: Any) -> Relay:
        submitter: LocalAccount = Account.create()
        engine_chain.set_balance(submitter.address, 10**19)
        data_key = secrets.token_hex(32)  # the relay seals job inputs at rest with it
        engine_ledger.add_secret("data key", data_key)
        settings = RelaySettings(
            rpc_urls=[engine_node.url],
            settlement=engine_chain.settlement.address,
            hospital_key=KeyConfig(keystore=tmp_path / "unused-hospital.json"),
            submitter_key=KeyConfig(keystore=tmp_path / "unused-submitter.json"),
            nullifier_secret="11" * 32,
            data_key=data_key,
            data_dir=tmp_path / f"relay-{len(relays)}",
            confirmations=1,
            poll_interval_s=0.05,
            engine=EngineSettings(
                dsn=engine_pg.dsn,
                public_key=engine_key[1],
                parallelism=2,
                capacity=4,
                stalled_after_s=2.0,
                sweep_interval_s=0.5,
                poll_interval_s=0.5,
                **engine,
            ),
        )
        relay = Relay(settings, keys=RelayKeys(engine_hospital, submitter), models=engine_models)
        relay.start()
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        if relay.started:
            relay.stop()
        engine_ledger.add_path("relay data dir", relay.settings.data_dir)
