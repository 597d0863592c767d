"""README commands in a fresh shell: no exported variable, no activated venv.

``./zk setup`` writes ``zkcare_toolchain.pth`` into the venv, so every process of its
interpreter — ``ape``, py-solc-x, ape-foundry's anvil — finds the offline solc launcher and the
npm binaries. Here ``ape run deploy all`` (the README's line, with ``--out`` so the repo's
manifest is left alone) runs with ``env -i``: it must start its own anvil, compile if needed,
deploy and register without trying to download solc.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from prover.paths import ROOT

FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"


def fresh_env() -> dict[str, str]:
    """What a new login shell has: HOME and a system PATH, nothing of zkcare's."""
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": FRESH_PATH, "LANG": "C.UTF-8"}


def readme_line(pattern: str) -> list[str]:
    """The README command line matching ``pattern``, without its trailing comment."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if re.match(pattern, line):
            return shlex.split(line.split("  #")[0])
    raise AssertionError(f"no README line matches {pattern!r}")


def test_the_venv_reaches_the_offline_solc_and_anvil() -> None:
    code = (
        "import os, shutil, solcx; "
        "print(os.environ['SOLCX_BINARY_PATH']); print(shutil.which('anvil')); "
        "print([str(v) for v in solcx.get_installed_solc_versions()])"
    )
    done = subprocess.run(
        [".venv/bin/python", "-c", code], cwd=ROOT, env=fresh_env(), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    solcx_dir, anvil, versions = done.stdout.splitlines()
    assert Path(solcx_dir) == ROOT / ".toolchain" / "solcx"
    assert Path(anvil).resolve().is_relative_to(ROOT / "node_modules")
    assert "0.8.28" in versions


def test_readme_ape_run_deploy_all_works_in_a_fresh_shell(tmp_path: Path) -> None:
    args = readme_line(r"^\.venv/bin/ape run deploy all --network ethereum:local:foundry")
    done = subprocess.run(
        [*args, "--out", str(tmp_path)], cwd=ROOT, env=fresh_env(), capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "install_solc" not in output and "Downloading" not in output
    manifest = json.loads((tmp_path / "31337.json").read_text())
    assert {"ModelRegistry", "ClaimSettlement", "ResearchBounty"} <= set(manifest["contracts"])
    assert set(manifest["models"]) == {"zkcare/breast_cancer_lr", "zkcare/bounty_eval"}
