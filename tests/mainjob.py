"""A real run of the main job kept alive for a test module: the demo's own stages.

``MainJob.start`` runs, in a fresh process, every stage of ``python -m prover demo`` (bundles,
anvil, ``deploy_all``, the insurer's pool/product/policies, the relay over HTTP with its four
claims paid or denied, the DAO's bounty and the researcher's award), then keeps anvil and the
relay running until ``stop``. What the tests need (RPC URL, manifest, relay URL, the insurer's
and hospital's addresses, the policies) comes back as JSON. Run as a script it is that process.
``plain=True`` runs it with the old plain diagnostic bundle (public logit) instead of the
decision bundle: the privacy tests' contrast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class MainJob:
    """The live chain and relay of one main-job run."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]
    log: Path

    @classmethod
    def start(cls, tmp: Path, timeout: float = 900, *, plain: bool = False) -> MainJob:
        info_path = tmp / "mainjob.json"
        log = tmp / "mainjob.log"
        argv = [str(info_path), *(["plain"] if plain else [])]
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp)},
            stdin=subprocess.PIPE,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while not info_path.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"main job did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        return cls(proc, json.loads(info_path.read_text()), log)

    def stop(self) -> None:
        """Stop anvil and the relay (the process cleans up on stdin's end)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    @classmethod
    @contextmanager
    def running(cls, prefix: str, *, plain: bool = False) -> Iterator[MainJob]:
        """Start in a fresh temporary directory (not pytest's basetemp, which a concurrent
        pytest session may prune); stop and remove it afterwards."""
        tmp = Path(tempfile.mkdtemp(prefix=f"zkcare-{prefix}-"))
        try:
            job = cls.start(tmp, plain=plain)
            try:
                yield job
            finally:
                job.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def rpc(self) -> str:
        return str(self.info["rpc"])

    @property
    def deployment(self) -> Path:
        return Path(self.info["deployment"])

    @property
    def relay(self) -> str:
        return str(self.info["relay"])

    @property
    def relay_headers(self) -> dict[str, str]:
        """The demo hospital's token (submit + read: its own jobs)."""
        return {"Authorization": f"Bearer {self.info['relay_token']}"}

    @property
    def relay_admin_headers(self) -> dict[str, str]:
        """An operator's token (read + admin: every client's jobs, /healthz, /metrics)."""
        return {"Authorization": f"Bearer {self.info['relay_admin_token']}"}

    @property
    def relay_token_file(self) -> Path:
        """A 0600 file holding the operator's token (``--relay-token-file``)."""
        return Path(self.info["relay_token_file"])


def _main(info_path: Path, plain: bool = False) -> None:
    from contextlib import ExitStack

    from ape import chain

    from prover.demo import Report, _reserve_port, _Run, _stages, held_out_patients

    chosen = held_out_patients(None)
    with ExitStack() as stack:
        sock = _reserve_port(0)
        stack.callback(sock.close)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zkcare-mainjob-")))
        run = _Run(lambda m: print(m, flush=True), work, Report(), None, plain=plain)
        _stages(run, stack, chosen, sock)
        # The demo's hospital client holds submit + read (run.relay_token). An operator's view
        # of every client's jobs and of /healthz needs read + admin: the dashboard's token file.
        from prover.relay.auth import Scope
        from prover.relay.store import JobStore

        store = JobStore(work / "relay" / "jobs.sqlite3")  # the demo relay's data_dir
        try:
            _client, admin_token = store.create_client("mainjob-ops", [Scope.READ, Scope.ADMIN])
        finally:
            store.close()
        token_file = work / "relay-ops.token"
        token_file.touch(mode=0o600)
        token_file.write_text(admin_token + "\n")
        info = {
            "rpc": run.node.url,
            "chain_id": run.node.chain_id,
            "deployment": str(work / "deployments" / f"{run.node.chain_id}.json"),
            "relay": run.relay_url,
            "relay_token": run.relay_token,  # the hospital: submit + read (its own jobs)
            "relay_admin_token": admin_token,  # read + admin: every job, /healthz, /metrics
            "relay_token_file": str(token_file),
            "insurer": str(run.insurer.address),
            "insurer_key": run.insurer.private_key,  # ape's public test mnemonic
            "hospital": str(run.hospital.address),
            "policies": run.policies,
            "patients": [p.index for p in chosen],
            "last_block": int(chain.blocks.head.number),  # every stage's blocks are mined
            "claims": [
                {
                    "number": c.number,
                    "policy_id": c.policy_id,
                    "decision": c.decision,
                    "payout": c.payout_wei,
                    "tx_hash": c.tx_hash,
                    "gas": c.gas_used,
                }
                for c in run.report.claims
            ],
        }
        partial = info_path.with_suffix(".partial")
        partial.write_text(json.dumps(info))
        os.replace(partial, info_path)
        sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    _main(Path(sys.argv[1]), plain=sys.argv[2:] == ["plain"])
