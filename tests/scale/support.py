"""Relay processes sharing one PostgreSQL store, prover hosts, and on-chain checks.

A :class:`RelayFleet` writes one config per relay instance (same keys, secrets, store and chain;
its own data directory and port) and runs each as ``python -m prover.relay serve`` (a
:class:`relay.support.RelayProcess`, so ``kill -9`` is a real crash). Prover hosts are
``python -m prover.relay.engine prover`` process groups (``tests/engine/conftest.py``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from relay.support import RelayProcess, encrypt_key, job_body, wait_until

from prover.anvil import free_port
from prover.relay.auth import Scope

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("paid", "denied", "failed")


def fresh_database(pg: Any) -> str:
    """Create an empty database on the cluster; its DSN."""
    name = f"scale_{secrets.token_hex(4)}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.dsn.replace("dbname=postgres", f"dbname={name}")


def store_rows(dsn: str, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of the shared job store, as dicts."""
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return list(conn.execute(sql, args).fetchall())


def state_counts(dsn: str) -> dict[str, int]:
    try:
        rows = store_rows(dsn, "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
    except psycopg.errors.UndefinedTable:
        return {}
    return {r["state"]: int(r["n"]) for r in rows}


def unfinished(dsn: str) -> int:
    return sum(n for state, n in state_counts(dsn).items() if state not in FINAL)


@dataclass
class RelayFleet:
    """Relay instances on one PostgreSQL store and one chain, sharing one submitter key."""

    tmp: Path
    dsn: str
    node_url: str
    settlement: str
    bundle: Path
    hospital: LocalAccount
    submitter: LocalAccount
    engine: dict[str, Any] | None = None  # [engine] table (dsn, public_key, ...) or local pool
    lease_ttl_s: float = 2.0
    lease_renew_s: float = 0.5
    relays: list[RelayProcess] = field(default_factory=list)
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pw_h, pw_s = secrets.token_hex(12), secrets.token_hex(12)
        self._hospital_ks = encrypt_key(self.hospital.key, pw_h, self.tmp / "hospital.json")
        self._submitter_ks = encrypt_key(self.submitter.key, pw_s, self.tmp / "submitter.json")
        self.env = {
            "ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE": pw_h,
            "ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE": pw_s,
            "ZKCARE_RELAY_NULLIFIER_SECRET": secrets.token_hex(32),
            "ZKCARE_RELAY_DATA_KEY": secrets.token_hex(32),  # every instance opens every job
            "ZKCARE_RELAY_STORE_DSN": self.dsn,
            "PYTHONPATH": str(ROOT),
        }

    def add(self) -> RelayProcess:
        """Configure one more relay instance (not started)."""
        i = len(self.relays)
        config = self.tmp / f"relay-{i}.toml"
        lines = [
            f'rpc_urls = ["{self.node_url}"]',
            f'settlement = "{self.settlement}"',
            f'data_dir = "{self.tmp / f"relay-data-{i}"}"',
            "workers = 1",
            "confirmations = 1",
            "poll_interval_s = 0.05",
            "stuck_timeout_s = 20",
            "max_queue = 500",
            f"submitter_lease_ttl_s = {self.lease_ttl_s}",
            f"submitter_lease_renew_s = {self.lease_renew_s}",
            "[hospital_key]",
            f'keystore = "{self._hospital_ks}"',
            "[submitter_key]",
            f'keystore = "{self._submitter_ks}"',
            "[[models]]",
            'name = "breast_cancer_lr"',
            "version = 1",
            f'bundle = "{self.bundle}"',
        ]
        if self.engine is not None:
            lines.append("[engine]")
            lines += [f"{k} = {_toml(v)}" for k, v in self.engine.items()]
        config.write_text("\n".join(lines) + "\n")
        relay = RelayProcess(config, dict(self.env), free_port(), self.tmp / f"relay-{i}.log")
        relay.token = self.token
        self.relays.append(relay)
        return relay

    def create_client(self, *scopes: Scope) -> str:
        """A client in the shared store (every instance knows it); the first is the fleet's."""
        from prover.relay.store import open_store

        store = open_store(self.tmp / "unused.sqlite3", self.dsn)
        try:
            _client, token = store.create_client(
                f"fleet-{secrets.token_hex(4)}", list(scopes or Scope)
            )
        finally:
            store.close()
        if not self.token:
            self.token = token
            for relay in self.relays:
                relay.token = token
        return token

    def health(self, relay: RelayProcess, token: str | None = None) -> dict[str, Any] | None:
        """``/healthz`` of a running instance (None if it does not answer)."""
        try:
            response = requests.get(
                relay.url + "/healthz",
                headers={"Authorization": f"Bearer {token or self.token}"},
                timeout=2,
            )
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def active(self) -> list[RelayProcess]:
        """The running instances that say they are the active submitter."""
        out = []
        for relay in self.relays:
            if relay.alive:
                health = self.health(relay)
                if health is not None and health["active_submitter"]:
                    out.append(relay)
        return out

    def wait_one_active(self, timeout: float = 30) -> RelayProcess:
        def one() -> RelayProcess | None:
            found = self.active()
            assert len(found) <= 1, [r.url for r in found]  # never two at once
            return found[0] if found else None

        relay: RelayProcess = wait_until(one, timeout, "one active submitter", poll=0.05)
        return relay

    def post(self, relay: RelayProcess, record: Any, policy: int, key: str) -> str | None:
        """Submit one job to ``relay``; its id (None if the relay died meanwhile)."""
        try:
            response = requests.post(
                relay.url + "/v1/jobs",
                json=job_body(record, policy, key),
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
        except requests.RequestException:
            return None
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def stop_all(self) -> None:
        for relay in self.relays:
            relay.terminate()


@dataclass
class ProverHost:
    """A prover host: ``python -m prover.relay.engine prover`` in its own process group."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, dsn: str, bundles: Path, key: Path, log: Path) -> ProverHost:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ZKCARE_ENGINE_DSN": dsn}
        proc = subprocess.Popen(
            [sys.executable, "-m", "prover.relay.engine", "prover", "--bundles", str(bundles),
             "--key", str(key), "--concurrency", "1", "--heartbeat-s", "0.5", "--poll-s", "0.5"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        return cls(proc, log)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def submitter_txs(w3: Any, address: str) -> list[tuple[int, str, int]]:
    """Every mined transaction from ``address``: ``(nonce, hash, block)``, in chain order."""
    out = []
    for number in range(w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"].lower() == address.lower():
                out.append((int(tx["nonce"]), tx["hash"].to_0x_hex(), number))
    return out


def assert_settled_on_chain(chain: Any, dsn: str, address: str, policies: list[int]) -> None:
    """On-chain: the submitter's mined nonces are 0..n-1 (no gap, none reused), each policy was
    settled exactly once, by the transaction the shared store recorded for its job."""
    txs = submitter_txs(chain.w3, address)
    nonces = [n for n, _, _ in txs]
    assert nonces == list(range(len(txs))), nonces  # contiguous, in order, each once
    assert chain.w3.eth.get_transaction_count(address) == len(txs)
    mined = {h for _, h, _ in txs}
    events: dict[int, tuple[str, str]] = {}
    for name, args, tx in chain.claim_events():
        if args["policyId"] in policies:
            assert args["policyId"] not in events, f"policy {args['policyId']} settled twice"
            events[args["policyId"]] = (name, tx)
    assert set(events) == set(policies), sorted(set(policies) - set(events))
    jobs = store_rows(dsn, "SELECT id, policy_id, state, tx_hash, nonce FROM jobs")
    by_policy = {int(j["policy_id"]): j for j in jobs if j["state"] != "failed"}
    for policy, (name, tx) in events.items():
        job = by_policy[policy]
        assert job["tx_hash"] == tx and tx in mined
        assert name == ("ClaimPaid" if job["state"] == "paid" else "ClaimDenied"), job
    # the store never gave one nonce to two of these jobs
    ids = [j["id"] for j in jobs if int(j["policy_id"]) in set(policies)]
    shared = store_rows(
        dsn,
        "SELECT nonce, COUNT(DISTINCT job_id) AS n FROM attempts WHERE job_id = ANY(%s)"
        " GROUP BY nonce HAVING COUNT(DISTINCT job_id) > 1",
        (ids,),
    )
    assert shared == [], shared
    assert len(txs) == len(policies)  # one transaction per claim: nothing wasted


def new_submitter(chain: Any) -> LocalAccount:
    account: LocalAccount = Account.create()
    chain.set_balance(account.address, 10**20)
    return account


def wait_pending_nonce(w3: Any, address: str, above: int, timeout: float) -> float:
    """Block until the node has a transaction from ``address`` with nonce >= ``above``; when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w3.eth.get_transaction_count(address, "pending") > above:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"no transaction with nonce {above} within {timeout} s")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
