"""`ape run deploy` and `ape run manage` end to end against a persistent anvil (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from prover.anvil import Anvil
from prover.paths import ROOT

DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # TEST::0
HOSPITAL = "0x70997970C51812dc3A010C7D01b50e0d17dc79C8"
HOLDER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


def ape_run(
    node: Anvil, out_dir: Path, *args: str, account: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = ["ape", "run", *args, "--network", node.url]
    if account:
        cmd += ["--account", "TEST::0"]
    env = {**os.environ, "ZKCARE_DEPLOYMENTS": str(out_dir)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    text = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in text
    last = text.splitlines()[-1]
    assert last.startswith("Error: "), text[-1000:]
    return last


@pytest.fixture(scope="module")
def deployed(node: Anvil, out_dir: Path) -> dict:
    ok(ape_run(node, out_dir, "deploy", "all"))
    return json.loads((out_dir / "31337.json").read_text())


def test_deploy_writes_the_manifest(deployed: dict, node: Anvil) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))
    assert deployed["chainId"] == 31337
    names = {
        "BreastCancerLrVerifier",
        "BountyEvalVerifier",
        "ModelRegistry",
        "ClaimSettlement",
        "ResearchBounty",
    }
    assert set(deployed["contracts"]) == names
    for entry in deployed["contracts"].values():
        code = w3.eth.get_code(entry["address"])
        assert "0x" + Web3.keccak(code).hex().removeprefix("0x") == entry["codeHash"]
        assert w3.eth.get_transaction_receipt(entry["txHash"])["status"] == 1
    assert set(deployed["models"]) == {"zkcare/breast_cancer_lr", "zkcare/bounty_eval"}


def test_second_deploy_changes_nothing(deployed: dict, node: Anvil, out_dir: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))
    nonce = w3.eth.get_transaction_count(DEPLOYER)
    text = ok(ape_run(node, out_dir, "deploy", "all"))
    assert text.count(": unchanged at ") == 5 and "already registered" in text
    assert w3.eth.get_transaction_count(DEPLOYER) == nonce
    assert json.loads((out_dir / "31337.json").read_text())["contracts"] == deployed["contracts"]


def test_operator_commands_change_chain_state(deployed: dict, node: Anvil, out_dir: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))
    settlement = deployed["contracts"]["ClaimSettlement"]["address"]
    before = w3.eth.get_balance(settlement)
    steps = [
        ("manage", "pool", "create"),
        ("manage", "pool", "fund", "1", "3.5"),
        ("manage", "hospital", "trust", "1", HOSPITAL),
        ("manage", "product", "create", "1", "--pay-if", "malignant", "--payout", "1"),
        ("manage", "policy", "issue", "1", HOLDER, "--coverage", "2", "--days", "30"),
        (
            "manage",
            "bounty",
            "create",
            "--amount",
            "0.5",
            "--min-accuracy",
            "0.875",
            "--deadline-hours",
            "24",
        ),
    ]
    for step in steps:
        assert "SUCCESS" in ok(ape_run(node, out_dir, *step))
    assert w3.eth.get_balance(settlement) - before == 3_500_000_000_000_000_000
    bounty = deployed["contracts"]["ResearchBounty"]["address"]
    assert w3.eth.get_balance(bounty) >= 500_000_000_000_000_000
    shown = ok(ape_run(node, out_dir, "manage", "show", account=False))
    assert "reserved 2000000000000000000" in shown and "bounty 1: open" in shown
    # The bounty cannot be refunded before its deadline: one named-error line.
    line = one_line_error(ape_run(node, out_dir, "manage", "bounty", "reclaim", "1"))
    assert "ResearchBountyDeadlineNotReached" in line
    ok(ape_run(node, out_dir, "manage", "model", "revoke", "zkcare/bounty_eval", "1"))
    assert "zkcare/bounty_eval v1: revoked" in ok(
        ape_run(node, out_dir, "manage", "show", account=False)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pool", "fund", "1", "abc"), "amount 'abc' is not a number"),
        (("pool", "fund", "1", "0"), "amount '0' must be a positive number"),
        (("pool", "fund", "42", "1"), "unknown pool 42"),
        (("hospital", "trust", "1", "0xnope"), "'0xnope' is not an Ethereum address"),
        (("product", "create", "1", "--payout", "1"), "give --pay-if, or both"),
        (
            ("bounty", "create", "--amount", "1", "--min-accuracy", "1.5"),
            "min accuracy must be within [0, 1]",
        ),
        (("model", "revoke", "zkcare/nope", "1"), "ModelRegistryUnknownVersion"),
    ],
)
def test_bad_arguments_get_one_clear_line(deployed, node, out_dir, args, message) -> None:
    line = one_line_error(ape_run(node, out_dir, "manage", *args))
    assert message in line


def test_no_deployment_on_a_chain_is_one_line(tmp_path: Path) -> None:
    with Anvil(chain_id=4242) as other:
        line = one_line_error(ape_run(other, tmp_path, "manage", "show", account=False))
    assert "no zkcare deployment for chain 4242" in line
