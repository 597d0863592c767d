"""Running ``ape run deploy|manage …`` as an operator would, for the tests that drive the scripts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from prover.anvil import Anvil
from prover.paths import ROOT

Proc = subprocess.CompletedProcess[str]


def ape_run(node: Anvil, out_dir: Path, *args: str, account: str | None = "TEST::0") -> Proc:
    """``ape run ARGS --network <node> [--account …]`` with its manifests in ``out_dir``."""
    cmd = ["ape", "run", *args, "--network", node.url]
    if account:
        cmd += ["--account", account]
    env = {**os.environ, "ZKCARE_DEPLOYMENTS": str(out_dir)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def ok(proc: Proc) -> str:
    """The command succeeded without a traceback; its whole output."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    return text
