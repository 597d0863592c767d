"""The researcher CLI (``python -m prover bounty submit|status``) against anvil, real proofs.

Every run is a fresh process, as a researcher would start it. Crash tests SIGKILL the CLI at
each step (``ZKCARE_RESEARCH_CRASH_AT``) and run the same command again: the submission must
end awarded with exactly two transactions sent (one commit, one reveal) and one payout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.deploy import model_id
from prover.models.bounty_eval import context_scale, eval_layout, float_correct, weights_of
from prover.paths import ROOT
from prover.relay.devchain import ETH, DevSender, compiled
from prover.research import CRASH_ENV, CRASH_POINTS

E18 = 10**18
EVAL = model_id("zkcare/bounty_eval")
PASSWORD = "researcher password"


@dataclass
class BountyChain:
    node: Anvil
    w3: Web3
    sponsor: DevSender
    bounty: Any
    scale: int

    def create(self, min_correct: int) -> int:
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 86400
        params = (ETH, E18, EVAL, 1, self.scale, min_correct, deadline)
        call = self.bounty.functions.createBounty(params)
        self.sponsor.send(
            {"to": self.bounty.address, "data": call._encode_transaction_data(), "value": E18}
        )
        return int(self.bounty.functions.bountyCount().call())


@pytest.fixture(scope="module")
def research_chain(eval_bundle) -> Iterator[BountyChain]:
    """anvil (1 s blocks) with a registry, the real evaluation verifier and a ResearchBounty."""
    with Anvil(block_time=1) as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        sponsor = DevSender(w3, Account.from_key(DEV_PRIVATE_KEY))
        reg_abi, reg_code = compiled("ModelRegistry")
        registry = sponsor.deploy(reg_code, reg_abi, sponsor.account.address)
        artifact = eval_bundle.verifier_artifact
        verifier = sponsor.send({"data": artifact["bytecode"]})["contractAddress"]
        fn = registry.functions
        sponsor.send(
            {
                "to": registry.address,
                "data": fn.grantRole(
                    fn.REGISTRAR_ROLE().call(), sponsor.account.address
                )._encode_transaction_data(),
            }
        )
        code_hash = Web3.keccak(w3.eth.get_code(verifier))
        sponsor.send(
            {
                "to": registry.address,
                "data": fn.registerModel(
                    EVAL,
                    1,
                    verifier,
                    code_hash,
                    bytes.fromhex(eval_bundle.manifest["sha256"]["onnx"]),
                    bytes.fromhex(eval_bundle.manifest["sha256"]["vk"]),
                    eval_layout(eval_bundle),
                )._encode_transaction_data(),
            }
        )
        b_abi, b_code = compiled("ResearchBounty")
        bounty = sponsor.deploy(b_code, b_abi, registry.address, 1)
        yield BountyChain(node, w3, sponsor, bounty, context_scale(eval_bundle))


@dataclass
class Researcher:
    account: LocalAccount
    keystore: Path
    password: Path
    weights: Path
    state: Path


@pytest.fixture
def new_researcher(research_chain, researcher_onnx, tmp_path) -> Researcher:
    """A fresh funded researcher with a keystore, a password file and a weights file."""
    account = Account.create()
    research_chain.w3.provider.make_request("anvil_setBalance", [account.address, hex(10 * E18)])
    keystore = tmp_path / "researcher.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, PASSWORD)))
    password = tmp_path / "password.txt"
    password.write_text(PASSWORD + "\n")
    w = weights_of(researcher_onnx)
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": [float(v) for v in w.w], "bias": w.b}))
    return Researcher(account, keystore, password, weights, tmp_path / "state")


def cli(chain: BountyChain, who: Researcher, command: str, bounty_id: int, *extra: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    args = [
        sys.executable, "-m", "prover", "bounty", command, str(bounty_id),
        "--rpc", chain.node.url, "--contract", chain.bounty.address,
        "--keystore", str(who.keystore), "--password-file", str(who.password),
        "--state-dir", str(who.state), *extra,
    ]  # fmt: skip
    if command == "submit":
        args += ["--weights", str(who.weights), "--timeout", "60"]
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def sent(chain: BountyChain, who: Researcher) -> int:
    return int(chain.w3.eth.get_transaction_count(who.account.address))


def test_submit_is_paid_and_a_rerun_sends_nothing(
    research_chain, new_researcher, benchmark, researcher_onnx
):
    chain, who = research_chain, new_researcher
    correct = float_correct(benchmark, weights_of(researcher_onnx))
    bounty_id = chain.create(min_correct=correct)
    before = chain.w3.eth.get_balance(who.account.address)
    done = cli(chain, who, "submit", bounty_id)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "awarded" in done.stdout and f"{correct}/114" in done.stdout
    record = chain.bounty.functions.getBounty(bounty_id).call()
    assert record[2] == 2 and record[-1] == who.account.address  # Awarded, to the researcher
    assert sent(chain, who) == 2  # one commit, one reveal
    gained = chain.w3.eth.get_balance(who.account.address) - before
    assert E18 - 10**16 < gained < E18  # the bounty, less gas
    again = cli(chain, who, "submit", bounty_id)
    assert again.returncode == 0 and sent(chain, who) == 2
    status = cli(chain, who, "status", bounty_id)
    assert status.returncode == 0 and ": awarded" in status.stdout


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_step_then_rerun_pays_once(
    research_chain, new_researcher, point, benchmark, researcher_onnx
):
    chain, who = research_chain, new_researcher
    correct = float_correct(benchmark, weights_of(researcher_onnx))
    bounty_id = chain.create(min_correct=correct - 2)
    crashed = cli(chain, who, "submit", bounty_id, env={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-1500:]
    [state] = [p for p in who.state.glob("*.json") if not p.name.endswith(".proof.json")]
    assert json.loads(state.read_text())["status"] != "awarded"
    done = cli(chain, who, "submit", bounty_id)
    assert done.returncode == 0, done.stderr[-1500:]
    record = chain.bounty.functions.getBounty(bounty_id).call()
    assert record[-1] == who.account.address
    assert sent(chain, who) == 2, f"crash at {point}: {sent(chain, who)} transactions"
    awards = chain.bounty.events.BountyAwarded().get_logs(from_block=0)
    assert [a["args"]["bountyId"] for a in awards].count(bounty_id) == 1


def test_a_model_below_the_minimum_sends_nothing(
    research_chain, new_researcher, benchmark, researcher_onnx
):
    chain, who = research_chain, new_researcher
    correct = float_correct(benchmark, weights_of(researcher_onnx))
    bounty_id = chain.create(min_correct=correct + 1)
    done = cli(chain, who, "submit", bounty_id)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]  # progress lines come first
    assert line.startswith("Error: ")
    assert f"classifies {correct} of 114 patients right; the bounty needs {correct + 1}" in line
    assert sent(chain, who) == 0


def test_lost_when_someone_else_won_first(
    research_chain, new_researcher, tmp_path_factory, benchmark, researcher_onnx
):
    chain, first = research_chain, new_researcher
    bounty_id = chain.create(min_correct=100)
    assert cli(chain, first, "submit", bounty_id).returncode == 0
    other_dir = tmp_path_factory.mktemp("second")
    account = Account.create()
    chain.w3.provider.make_request("anvil_setBalance", [account.address, hex(E18)])
    keystore = other_dir / "k.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, PASSWORD)))
    second = Researcher(account, keystore, first.password, first.weights, other_dir / "state")
    done = cli(chain, second, "submit", bounty_id)
    assert done.returncode == 1
    assert f"already awarded to {first.account.address}" in done.stderr
    assert sent(chain, second) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--contract", "0x" + "00" * 19 + "01"), "no contract at"),
        (("--key-env", "ZKCARE_TEST_NO_SUCH_VAR"), "is empty"),
    ],
)
def test_bad_input_is_one_line(research_chain, new_researcher, extra, message):
    chain, who = research_chain, new_researcher
    args = [
        sys.executable, "-m", "prover", "bounty", "submit", "1", "--rpc", chain.node.url,
        "--weights", str(who.weights), "--state-dir", str(who.state),
    ]  # fmt: skip
    if extra[0] == "--contract":
        args += [*extra, "--keystore", str(who.keystore), "--password-file", str(who.password)]
    else:
        args += ["--contract", chain.bounty.address, *extra]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert message in line and "Traceback" not in done.stderr
