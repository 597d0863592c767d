"""The offline toolchain: solc launcher behaviour and clear errors when a tool is missing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import solcx

from prover import toolchain
from prover.exceptions import ToolMissing
from prover.models.breast_cancer import build_diagnostic_bundle
from prover.paths import ROOT
from prover.zk.verifier import compile_source

LAUNCHER = ROOT / "prover" / "toolchain" / "solc"


def test_launcher_answers_version_like_native_solc():
    out = subprocess.run([LAUNCHER, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "solc, the solidity compiler commandline interface"
    assert out.stdout.splitlines()[1].startswith("Version: 0.8.28+commit.")


def test_py_solc_x_sees_exactly_the_pinned_launcher():
    assert solcx.get_installed_solc_versions() == [solcx.install.Version("0.8.28")]
    assert Path(solcx.install.get_executable("0.8.28")).resolve() == LAUNCHER.resolve()


def test_large_standard_json_on_stdin_compiles():
    """solcjs alone fails with EAGAIN on a big piped stdin; the launcher buffers it."""
    padding = "// " + "x" * 200 + "\n"
    source = (
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n"
        + padding * 2000  # ~400 KB of input
        + "contract Big { function f() external pure returns (uint256) { return 7; } }\n"
    )
    compiled = compile_source(source, "Big", "Big.sol")
    assert compiled.deployed_bytecode and compiled.abi[0]["name"] == "f"


def test_launcher_drops_the_banner_line_and_emits_pure_json():
    request = (
        '{"language":"Solidity","sources":{"a.sol":{"content":"contract A {}"}},"settings":{}}'
    )
    out = subprocess.run(
        [LAUNCHER, "--standard-json"], input=request, capture_output=True, text=True, check=True
    )
    assert not any(line.startswith(">>>") for line in out.stdout.splitlines())
    import json

    json.loads(out.stdout)


def test_missing_solcjs_gives_one_clear_line():
    env = {**os.environ, "ZKCARE_SOLCJS": "/nonexistent/solc.js"}
    out = subprocess.run([LAUNCHER, "--version"], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "zkcare solc launcher: solcjs not found at /nonexistent/solc.js; "
        "run `./zk setup` (or `npm ci`) in the zkcare checkout"
    )


def test_missing_compiler_fails_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(toolchain, "SOLCJS", tmp_path / "missing" / "solc.js")
    with pytest.raises(ToolMissing, match=r"solc \(npm solcjs\) not found .*run `./zk setup`"):
        build_diagnostic_bundle(out_root=tmp_path / "bundles", export_verifier_to=None)
    assert not (tmp_path / "bundles").exists() or not any((tmp_path / "bundles").iterdir())


def test_missing_anvil_is_reported(monkeypatch):
    monkeypatch.setenv("ZKCARE_ANVIL", "/nonexistent/anvil")
    with pytest.raises(
        ToolMissing, match=r"anvil not found \(/nonexistent/anvil\); run `./zk setup`"
    ):
        toolchain.anvil_binary()


def test_demo_cli_without_a_chain_exits_with_one_line():
    env = {**os.environ, "ZKCARE_ANVIL": "/nonexistent/anvil"}
    out = subprocess.run(
        [sys.executable, "-m", "prover", "demo"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "Error: demo failed at chain: anvil not found (/nonexistent/anvil); "
        "run `./zk setup` in the zkcare checkout"
    )
    assert "Traceback" not in out.stderr
