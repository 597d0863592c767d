"""Index fixtures: a throwaway PostgreSQL cluster, a small dev chain, a real main-job chain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mainjob import MainJob

from prover.anvil import Anvil, free_port
from prover.relay.devchain import DevChain, compiled, deploy_dev_chain
from prover.zk.circuit import Bundle

PG_BIN = next(
    (
        p
        for p in (
            Path("/usr/lib/postgresql/15/bin"),
            *sorted(Path("/usr/lib/postgresql").glob("*/bin")),
        )
        if (p / "initdb").is_file()
    ),
    None,
)


@dataclass
class PgCluster:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port."""

    url: str
    data: Path
    run_as: list[str]

    def pg_ctl(self, *args: str, check: bool = True) -> None:
        assert PG_BIN is not None
        subprocess.run(
            [*self.run_as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
            check=check,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def index_pg() -> Iterator[PgCluster]:
    """Started here (initdb + pg_ctl; as the ``postgres`` user when we are root), removed after."""
    if PG_BIN is None:
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    # Not under pytest's basetemp: a concurrent pytest session on this machine may prune it.
    root = Path(tempfile.mkdtemp(prefix="zkcare-index-pg-"))
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; hand the directory to the postgres user
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o700)
        for parent in root.parents:  # the postgres user must reach its directory
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o111)
    subprocess.run(
        [
            *run_as,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "zkcare",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    cluster = PgCluster(f"postgresql://zkcare@127.0.0.1:{port}/postgres", data, run_as)
    cluster.pg_ctl(
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield cluster
    finally:
        cluster.pg_ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def index_pg_db(index_pg: PgCluster) -> Iterator[str]:
    """A fresh database in the cluster for one test."""
    import psycopg

    name = f"idx_{os.urandom(4).hex()}"
    with psycopg.connect(index_pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield index_pg.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(index_pg.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def index_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on the throwaway PostgreSQL cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "index.sqlite")
    return str(request.getfixturevalue("index_pg_db"))


@dataclass
class IndexDevChain:
    """A dev chain (registry, settlement with a funded pool and a product, bounty contract)."""

    node: Anvil
    chain: DevChain
    manifest: Path

    def rpc(self, method: str, params: list[Any]) -> Any:
        return self.chain.w3.provider.make_request(method, params)["result"]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def index_dev_chain(
    diagnostic_bundle: Bundle,
) -> Iterator[IndexDevChain]:
    with Anvil() as node:
        chain = deploy_dev_chain(
            node.url, diagnostic_bundle, "0x000000000000000000000000000000000000dEaD"
        )
        abi, code = compiled("ResearchBounty")
        bounty = chain.sender.deploy(code, abi, chain.registry.address, 1)
        manifest = Path(tempfile.mkdtemp(prefix="zkcare-index-dev-")) / f"{chain.chain_id}.json"
        manifest.write_text(
            json.dumps(
                {
                    "chainId": chain.chain_id,
                    "contracts": {
                        "ModelRegistry": {"address": chain.registry.address, "blockNumber": 1},
                        "ClaimSettlement": {"address": chain.settlement.address, "blockNumber": 1},
                        "ResearchBounty": {"address": bounty.address, "blockNumber": 1},
                    },
                }
            )
        )
        yield IndexDevChain(node, chain, manifest)
        shutil.rmtree(manifest.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def index_main_job() -> Iterator[MainJob]:
    """One real run of the main job (the demo's stages) for the module, left running."""
    with MainJob.running("index-mainjob") as job:
        yield job
