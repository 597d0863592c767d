"""`ape run deploy` and `ape run manage` end to end against one anvil (subprocesses, ~3 s each).

The module deploys once, checks the manifest and that a second deployment sends nothing, then
drives every operator command and checks the chain with web3. Roles: TEST::0 deploys (admin,
registrar, guardian, pauser) and sponsors bounties, TEST::1 insures an ETH pool, TEST::2 a
token pool. Failing commands must end in one `Error: ...` line, never a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ape_commands import Proc, ape_run, ok
from web3 import Web3

from prover.anvil import Anvil

E18 = 10**18
ETH = "0x" + "00" * 20
DIAG = "zkcare/breast_cancer_lr"
EVAL = "zkcare/bounty_eval"
CONTRACTS = {
    "BreastCancerLrDecisionVerifier",
    "BreastCancerLrDecisionBatchVerifier",
    "BountyEvalVerifier",
    "ModelRegistry",
    "ClaimSettlement",
    "ResearchBounty",
}


# ------------------------------------------------------------------------------------------ helpers


def one_line_error(proc: Proc) -> str:
    """The command failed and its stderr ends in a single `Error: ...` line."""
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "Traceback" not in text
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), proc.stderr[-2000:]
    return last


def mine(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


@pytest.fixture(scope="module")
def w3(node: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(node.url))


@pytest.fixture(scope="module")
def acct(w3: Web3) -> list[str]:
    """anvil's dev accounts = ape's TEST::i (same mnemonic)."""
    return list(w3.eth.accounts)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="module")
def run(node: Anvil, out_dir: Path):
    def _run(*args: str, account: str | None = "TEST::0") -> Proc:
        return ape_run(node, out_dir, *args, account=account)

    return _run


@pytest.fixture(scope="module")
def deployed(run, out_dir: Path) -> dict[str, Any]:
    ok(run("deploy", "all"))
    return json.loads((out_dir / "31337.json").read_text())


@pytest.fixture(scope="module")
def c(w3: Web3, deployed: dict[str, Any], project):
    """web3 contracts bound from the manifest, with ape's compiled ABIs."""

    def bind(name: str):
        abi = project.get_contract(name).contract_type.model_dump(mode="json", by_alias=True)
        return w3.eth.contract(address=deployed["contracts"][name]["address"], abi=abi["abi"])

    class Contracts:
        registry = bind("ModelRegistry")
        settlement = bind("ClaimSettlement")
        bounty = bind("ResearchBounty")

    return Contracts


@pytest.fixture(scope="module")
def insured(run, deployed, acct, w3, c) -> dict[str, Any]:
    """TEST::1 runs an ETH pool: fund, trust a hospital, two products (one retired), policies."""
    before = w3.eth.get_balance(c.settlement.address)
    insurer = "TEST::1"
    hospital, holder = acct[7], acct[8]
    steps = [
        ("pool", "create"),
        ("pool", "fund", "1", "3.5"),
        ("hospital", "trust", "1", hospital),
        ("hospital", "trust", "1", acct[9]),
        ("hospital", "trust", "1", acct[9], "--revoke"),
        ("product", "create", "1", "--pay-if", "malignant", "--payout", "1"),
        ("product", "create", "1", "--pay-if", "malignant", "--payout", "0.25"),
        ("product", "retire", "2"),
        ("policy", "issue", "1", holder, "--coverage", "2", "--days", "30"),
        ("policy", "issue", "1", holder, "--coverage", "0.5", "--days", "0.001"),
        ("pool", "withdraw", "1", "0.25", "--to", acct[6]),
    ]
    to_before = w3.eth.get_balance(acct[6])
    outputs = [ok(run("manage", *step, account=insurer)) for step in steps]
    return {
        "insurer": acct[1],
        "hospital": hospital,
        "holder": holder,
        "outputs": outputs,
        "pool": c.settlement.functions.getPool(1).call(),
        "settlement_delta": w3.eth.get_balance(c.settlement.address) - before,
        "to_delta": w3.eth.get_balance(acct[6]) - to_before,
        "head": w3.eth.get_block("latest")["timestamp"],
    }


@pytest.fixture(scope="module")
def released(insured, run, w3, c) -> dict[str, Any]:
    """Policy 2 (86 s) cannot be released yet; after it and the claims' 3-day grace anyone
    (TEST::5) releases it."""
    early = run("manage", "policy", "release", "2", account="TEST::5")
    mine(w3, 200 + 3 * 86400)
    text = ok(run("manage", "policy", "release", "2", account="TEST::5"))
    return {
        "early": early,
        "text": text,
        "policy": c.settlement.functions.getPolicy(2).call(),
        "pool": c.settlement.functions.getPool(1).call(),
    }


@pytest.fixture(scope="module")
def token_pool(released, run, w3, c, acct, project) -> dict[str, Any]:
    """TEST::2 runs a pool in a 6-decimal ERC-20 (deployed and minted here with web3)."""
    token_type = project.get_contract("MockERC20").contract_type
    abi = token_type.model_dump(mode="json", by_alias=True)["abi"]
    factory = w3.eth.contract(abi=abi, bytecode=token_type.deployment_bytecode.bytecode)
    tx = factory.constructor("Test USD", "TUSD", 6).transact({"from": acct[2]})
    address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    token = w3.eth.contract(address=address, abi=abi)
    token.functions.mint(acct[2], 1000 * 10**6).transact({"from": acct[2]})
    texts = [
        ok(run("manage", "pool", "create", "--token", address, account="TEST::2")),
        ok(run("manage", "pool", "fund", "2", "250.5", account="TEST::2")),
    ]
    return {
        "token": token,
        "texts": texts,
        "too_precise": run("manage", "pool", "fund", "2", "0.0000001", account="TEST::2"),
        "too_much": run("manage", "pool", "fund", "2", "5000", account="TEST::2"),
    }


@pytest.fixture(scope="module")
def bounty_flow(token_pool, run, w3, c, acct) -> dict[str, Any]:
    """TEST::0 escrows 0.5 ETH for 1 h; cancel is refused before the deadline, refund after."""
    b = c.bounty.functions
    created = ok(
        run(
            "manage",
            "bounty",
            "create",
            "--amount",
            "0.5",
            "--min-accuracy",
            "0.8",
            "--deadline-hours",
            "1",
        )
    )
    bounty_id = b.bountyCount().call()
    out: dict[str, Any] = {
        "id": bounty_id,
        "created": created,
        "record": b.getBounty(bounty_id).call(),
        "head": w3.eth.get_block("latest")["timestamp"],
        "escrow": w3.eth.get_balance(c.bounty.address),
        "cancel": run("manage", "bounty", "cancel", str(bounty_id), account="TEST::4"),
    }
    mine(w3, 3601)
    balance = w3.eth.get_balance(acct[0])
    out["refund"] = ok(run("manage", "bounty", "refund", str(bounty_id), account="TEST::4"))
    out["sponsor_gain"] = w3.eth.get_balance(acct[0]) - balance  # TEST::4 paid the gas
    out["status"] = b.getBounty(bounty_id).call()[2]
    out["escrow_after"] = w3.eth.get_balance(c.bounty.address)
    out["again"] = run("manage", "bounty", "reclaim", str(bounty_id))
    out["show"] = ok(run("manage", "bounty", "show", str(bounty_id), account=None))
    return out


@pytest.fixture(scope="module")
def upgraded(bounty_flow, run, w3, c, out_dir, acct) -> dict[str, Any]:
    """Register the plain (public-logit) diagnostic bundle as v2, revoke v1 (the decision
    bundle), add a product, redeploy (no-op)."""
    from prover.models.breast_cancer import build_diagnostic_bundle

    r = c.registry.functions
    diag = Web3.keccak(text=DIAG)
    bundle_dir = str(build_diagnostic_bundle().path)  # the plain bundle, a directory
    out: dict[str, Any] = {
        "register": ok(
            run("manage", "model", "register", bundle_dir, "--name", DIAG, "--version", "2")
        ),
        "manifest": json.loads((out_dir / "31337.json").read_text()),
        "v2": r.getModelVersion(diag, 2).call(),
    }
    out["revoke"] = ok(run("manage", "model", "revoke", DIAG, "1"))
    out["v1"] = r.getModelVersion(diag, 1).call()
    out["product"] = ok(
        run(
            "manage",
            "product",
            "create",
            "1",
            "--pay-if",
            "benign",
            "--payout",
            "0.1",
            account="TEST::1",
        )
    )
    nonce = w3.eth.get_transaction_count(acct[0])
    out["redeploy"] = ok(run("deploy", "all"))
    out["redeploy_txs"] = w3.eth.get_transaction_count(acct[0]) - nonce
    out["show"] = ok(run("manage", "model", "show", DIAG, account=None))
    out["copy"] = ok(
        run("manage", "model", "register", bundle_dir, "--name", "acme/lr", "--version", "3")
    )
    out["copy_v3"] = r.getModelVersion(Web3.keccak(text="acme/lr"), 3).call()
    out["register_revoked"] = run("manage", "model", "register", "diagnostic", "--version", "1")
    return out


@pytest.fixture(scope="module")
def rule_products(upgraded, run, c) -> dict[str, Any]:
    """TEST::1 adds two products on v2 with the rule options: --output and --pay-if-class."""
    out: dict[str, Any] = {}
    for key, rule in {
        "output": ("--comparison", "at-most", "--threshold", "-1", "--output", "0"),
        "class": ("--pay-if-class", "0"),
    }.items():
        text = ok(
            run("manage", "product", "create", "1", *rule, "--payout", "0.1", account="TEST::1")
        )
        match = re.search(r"created product (\d+): ", text)
        assert match, text
        product_id = int(match.group(1))
        out[key] = {"text": text, "record": c.settlement.functions.getProduct(product_id).call()}
    return out


@pytest.fixture(scope="module")
def paused_issue(upgraded, run, c, acct) -> Proc:
    """A revert the pre-checks do not cover: issuing a policy while the settlement is paused."""
    c.settlement.functions.pause().transact({"from": acct[0]})
    try:
        return run(
            "manage", "policy", "issue", "1", acct[8], "--coverage", "0.1", account="TEST::1"
        )
    finally:
        c.settlement.functions.unpause().transact({"from": acct[0]})


# ------------------------------------------------------------------------------------------ deploy


def test_deploy_writes_the_manifest(deployed, w3, c, acct) -> None:
    assert deployed["chainId"] == 31337
    assert deployed["deployer"] == acct[0]
    assert set(deployed["contracts"]) == CONTRACTS
    for entry in deployed["contracts"].values():
        code = w3.eth.get_code(entry["address"])
        assert code, entry
        assert Web3.keccak(code).to_0x_hex() == entry["codeHash"]
        receipt = w3.eth.get_transaction_receipt(entry["txHash"])
        assert receipt["status"] == 1 and receipt["contractAddress"] == entry["address"]
        assert receipt["blockNumber"] == entry["blockNumber"]
    assert set(deployed["models"]) == {DIAG, EVAL}
    for name, m in deployed["models"].items():
        assert m["modelId"] == Web3.keccak(text=name).to_0x_hex()
        version = c.registry.functions.getModelVersion(m["modelId"], m["version"]).call()
        assert version[0] == m["verifier"] and version[1] == 1  # verifier, Active
        assert list(version[2:7]) == m["layout"]
    # (instanceCount, inputIndex, outputIndex, outputCount, outputScale), as each card says: the
    # decision circuit's one instance is its decision and its input commitment is the proof's
    # first G1 point (inputIndex PROOF_COMMITMENT); the evaluation's instances are
    # [weightsCommitment, correct, context_0..5] (hashed), so its outputs are the correct count
    # (scale 0) and the six context limbs.
    from prover.deploy import instance_layout
    from prover.models.bounty_eval import build_eval_bundle
    from prover.models.breast_cancer import build_decision_bundle
    from prover.zk.commitment import PROOF_COMMITMENT_INDEX

    decision = list(instance_layout(build_decision_bundle()))
    assert deployed["models"][DIAG]["layout"] == decision
    assert decision[:4] == [1, PROOF_COMMITMENT_INDEX, 0, 1]
    assert deployed["models"][EVAL]["layout"] == list(instance_layout(build_eval_bundle()))
    assert deployed["models"][EVAL]["layout"] == [8, 0, 1, 7, 0]
    # The diagnostic model's batch verifier is registered next to it, code hash pinned.
    batch = deployed["contracts"]["BreastCancerLrDecisionBatchVerifier"]
    assert deployed["models"][DIAG]["batchVerifier"] == {
        "address": batch["address"],
        "codeHash": batch["codeHash"],
    }
    record = c.registry.functions.getBatchVerifier(deployed["models"][DIAG]["modelId"], 1).call()
    assert (record[0], Web3.to_hex(record[1])) == (batch["address"], batch["codeHash"])


def test_second_deploy_changes_nothing(deployed, run, w3, out_dir, acct) -> None:
    nonce, block = w3.eth.get_transaction_count(acct[0]), w3.eth.block_number
    text = ok(run("deploy", "all"))
    assert text.count(": unchanged at ") == 5  # the batch verifier: "already registered"
    assert text.count("already registered") == 3  # two models, one batch verifier
    assert w3.eth.get_transaction_count(acct[0]) == nonce
    assert w3.eth.block_number == block
    assert json.loads((out_dir / "31337.json").read_text()) == deployed


# ------------------------------------------------------------------------------------------ manage


def diag_scale(deployed: dict[str, Any]) -> int:
    """The diagnostic model's output scale (fractional bits), as registered."""
    return int(deployed["models"][DIAG]["layout"][-1])


def test_insurer_commands(insured, deployed, w3, c) -> None:
    s = c.settlement.functions
    insurer, holder = insured["insurer"], insured["holder"]
    # Pool: (insurer, asset, balance, reserved) right after the insurer's commands
    assert insured["pool"] == (insurer, ETH, 3_250_000_000_000_000_000, 25 * E18 // 10)
    assert insured["settlement_delta"] == 3_250_000_000_000_000_000
    assert insured["to_delta"] == E18 // 4
    assert s.isHospitalTrusted(1, insured["hospital"]).call() is True
    assert s.isHospitalTrusted(1, w3.eth.accounts[9]).call() is False
    diag = Web3.keccak(text=DIAG)
    # Product: (modelId, poolId, version, retired, payout, (comparison, output, threshold))
    # v1 is the decision bundle ("pay if malignant" in the circuit): AtLeast 1 on the decision
    assert diag_scale(deployed) == 0
    assert s.getProduct(1).call() == (diag, 1, 1, False, E18, (0, 0, 1))
    assert s.getProduct(2).call() == (diag, 1, 1, True, E18 // 4, (0, 0, 1))
    holder_, expiry, product_id, reserved, paid = s.getPolicy(1).call()
    assert (holder_, product_id, reserved, paid) == (holder, 1, 2 * E18, 0)
    assert abs(expiry - (insured["head"] + 30 * 86400)) < 120
    text = "\n".join(insured["outputs"])
    for success in (
        "pool 1 created (ETH)",
        "pool 1 funded with 3.5 ETH; balance 3.5 ETH",
        f"hospital {insured['hospital']} trusted by pool 1",
        "no longer trusted by pool 1",
        "created product 1: pool 1, zkcare/breast_cancer_lr v1, pays 1 ETH if decision == 1",
        "created product 2: pool 1, zkcare/breast_cancer_lr v1, pays 0.25 ETH if decision == 1",
        "product 2 retired",
        f"policy 1 issued to {holder}: coverage 2 ETH, expires ",
        "withdrew 0.25 ETH from pool 1",
    ):
        assert success in text, success


def test_policy_release_only_after_expiry(released) -> None:
    line = one_line_error(released["early"])
    assert "policy 2 runs until" in line and "release it after that" in line
    assert "policy 2 released: 0.5 ETH back to its pool" in released["text"]
    assert released["policy"][3] == 0  # nothing reserved any more
    assert released["pool"][3] == 2 * E18  # only policy 1's coverage stays reserved


def test_token_pool_is_approved_and_funded(token_pool, c, acct) -> None:
    token = token_pool["token"]
    assert "pool 2 created (TUSD)" in token_pool["texts"][0]
    assert "pool 2 funded with 250.5 TUSD; balance 250.5 TUSD" in token_pool["texts"][1]
    assert c.settlement.functions.getPool(2).call() == (acct[2], token.address, 250_500_000, 0)
    assert token.functions.balanceOf(c.settlement.address).call() == 250_500_000
    assert "more than 6 decimal places" in one_line_error(token_pool["too_precise"])
    assert "holds 749.5 TUSD, less than 5000 TUSD" in one_line_error(token_pool["too_much"])


def test_bounty_create_cancel_refund_show(bounty_flow, acct) -> None:
    from prover.models.bounty_eval import build_eval_bundle, context_scale

    i = bounty_flow["id"]
    assert (
        f"bounty {i} created: 0.5 ETH escrowed, at least 92 benchmark patients right"
        in bounty_flow["created"]
    )
    bundle = build_eval_bundle()
    (sponsor, deadline, status, scale, asset, version, mid, min_metric,
     amount, winner) = bounty_flow["record"]  # fmt: skip
    assert (sponsor, status, asset, version) == (acct[0], 1, ETH, 1)
    assert scale == context_scale(bundle)
    assert mid == Web3.keccak(text=EVAL)
    assert min_metric == 92  # 0.8 of 114 patients = 91.2, rounded up
    assert (amount, winner) == (E18 // 2, ETH)
    assert abs(deadline - (bounty_flow["head"] + 3600)) < 120
    assert bounty_flow["escrow"] == E18 // 2
    assert "has no cancel before the deadline" in one_line_error(bounty_flow["cancel"])
    assert f"bounty {i} reclaimed: 0.5 ETH back to {acct[0]}" in bounty_flow["refund"]
    assert bounty_flow["sponsor_gain"] == E18 // 2
    assert bounty_flow["status"] == 3  # Reclaimed
    assert bounty_flow["escrow_after"] == 0
    assert f"bounty {i} was already reclaimed" in one_line_error(bounty_flow["again"])
    assert f"bounty {i}: reclaimed, 0.5 ETH, sponsor {acct[0]}" in bounty_flow["show"]
    assert "at least 92 benchmark patients right" in bounty_flow["show"]


def test_model_register_revoke_and_redeploy(upgraded, deployed, c) -> None:
    diag = Web3.keccak(text=DIAG)
    # the plain circuit's verifier, keyed by the bundle directory's hash
    assert re.search(r"BreastCancerLrVerifier-[0-9a-f]+: deployed at", upgraded["register"])
    assert f"model {DIAG} v2 registered" in upgraded["register"]
    # v2 gets its own batch verifier next to its verifier
    assert re.search(r"BreastCancerLrBatchVerifier-[0-9a-f]+: deployed at", upgraded["register"])
    assert f"model {DIAG} v2: batch verifier registered" in upgraded["register"]
    verifier = upgraded["v2"][0]
    assert verifier != deployed["models"][DIAG]["verifier"]  # not v1's decision verifier
    assert upgraded["v2"][:2] == (verifier, 1)  # Active
    assert upgraded["manifest"]["models"][DIAG]["version"] == 2
    assert upgraded["v1"][1] == 2  # Revoked
    assert c.registry.functions.isActive(diag, 1).call() is False
    # Products default to the manifest's (new) version.
    unit = 1 / 2 ** diag_scale(upgraded["manifest"])  # one fixed-point unit: "benign" is >= it
    assert f"{DIAG} v2, pays 0.1 ETH if output 0 >= {unit:g} (raw 1)" in upgraded["product"]
    assert c.settlement.functions.getProduct(3).call() == (diag, 1, 2, False, E18 // 10, (0, 0, 1))
    # Re-running the deployment after the upgrade sends nothing.
    assert f"model {DIAG} v1: superseded by v2 in the manifest" in upgraded["redeploy"]
    assert upgraded["redeploy_txs"] == 0
    assert f"{DIAG} v1: revoked" in upgraded["show"] and f"{DIAG} v2: active" in upgraded["show"]
    # A bundle directory with the built-in verifier's code reuses the deployed verifier.
    assert re.search(r"BreastCancerLrVerifier-[0-9a-f]+: unchanged at", upgraded["copy"])
    assert "model acme/lr v3 registered" in upgraded["copy"]
    from prover.deploy import instance_layout
    from prover.models.breast_cancer import build_diagnostic_bundle

    plain = instance_layout(build_diagnostic_bundle())  # one output; commitment in the proof
    assert plain[:4] == (1, 0xFFFF, 0, 1) and plain[4] == diag_scale(upgraded["manifest"])
    assert upgraded["v2"][2:7] == plain
    assert upgraded["copy_v3"][:7] == (verifier, 1, *plain)
    line = one_line_error(upgraded["register_revoked"])
    assert f"model {DIAG} v1 is revoked; use a new version" in line


def test_product_create_with_output(rule_products, upgraded) -> None:
    """--comparison/--threshold with --output K: AtMost -1 on output 0 of v2."""
    product = rule_products["output"]
    threshold = -(2 ** diag_scale(upgraded["manifest"]))
    diag = Web3.keccak(text=DIAG)
    assert product["record"] == (diag, 1, 2, False, E18 // 10, (1, 0, threshold))
    assert f"{DIAG} v2, pays 0.1 ETH if output 0 <= -1 (raw {threshold})" in product["text"]


def test_product_create_pay_if_class(rule_products) -> None:
    """--pay-if-class K: ArgMaxIs on class K, threshold 0."""
    product = rule_products["class"]
    diag = Web3.keccak(text=DIAG)
    assert product["record"] == (diag, 1, 2, False, E18 // 10, (2, 0, 0))
    assert f"{DIAG} v2, pays 0.1 ETH if class 0 is the arg-max of the outputs" in product["text"]


def test_reverts_are_decoded_into_their_names(paused_issue) -> None:
    assert one_line_error(paused_issue) == "Error: transaction reverted: EnforcedPause()"


def test_show_summarises_everything(paused_issue, run, acct) -> None:
    text = ok(run("manage", "show", account=None))
    expected = [
        "zkcare on chain 31337",
        "ClaimSettlement         0x",
        f"{DIAG} v1: revoked",
        f"{DIAG} v2: active",
        f"{EVAL} v1: active",
        f"pool 1: ETH, insurer {acct[1]}, balance 3.25 ETH, reserved 2 ETH, available 1.25 ETH",
        f"pool 2: TUSD, insurer {acct[2]}, balance 250.5 TUSD",
        "product 1: pool 1, zkcare/breast_cancer_lr v1, pays 1 ETH if decision == 1",
        "product 2: pool 1, zkcare/breast_cancer_lr v1, pays 0.25 ETH if decision == 1",
        "), retired",
        "product 3: pool 1, zkcare/breast_cancer_lr v2",
        f"policy 1: product 1, holder {acct[8]}, coverage left 2 ETH, paid 0 ETH, expires ",
        "policy 2: product 1",
        "bounty 1: reclaimed, 0.5 ETH",
        "claims settled: 0",
    ]
    for line in expected:
        assert line in text, line


# ------------------------------------------------------------------------------------------ errors

#: case -> (arguments, expected in the error line[, account: default TEST::1, the insurer]).
#: Each case costs one `ape run` (~3 s); the unit tests cover the remaining value checks.
BAD: dict[str, tuple[Any, ...]] = {
    "negative amount": (
        ("pool", "fund", "1", "-1"),
        "Invalid value for 'AMOUNT': amount -1 must be a positive number",
    ),
    "unknown pool": (("pool", "fund", "42", "1"), "Invalid value for 'POOL_ID': unknown pool 42"),
    "token without code": (
        ("pool", "create", "--token", "0x" + "12" * 20),
        "no contract at 0x1212",
    ),
    "not the insurer": (
        ("pool", "withdraw", "1", "1"),
        "is not the insurer of pool 1",
        "TEST::0",
    ),
    "malformed hospital": (
        ("hospital", "trust", "1", "0xnope"),
        "Invalid value for 'ADDRESS': '0xnope' is not an Ethereum address",
    ),
    "no payout rule": (
        ("product", "create", "1", "--payout", "1"),
        "give --pay-if, --pay-if-class, or both --comparison and --threshold",
    ),
    "class beyond the outputs": (
        ("product", "create", "1", "--pay-if-class", "12", "--payout", "1"),
        "Invalid value for '--pay-if-class': invalid payout rule ArgMaxIs(class 12): "
        "zkcare/breast_cancer_lr v",
    ),
    "threshold beyond int128": (
        (
            "product",
            "create",
            "1",
            "--comparison",
            "at-most",
            "--threshold",
            "1e40",
            "--payout",
            "1",
        ),
        "Invalid value for '--threshold': threshold 1e+40 does not fit int128",
    ),
    "unknown model": (
        ("product", "create", "1", "--model", "zkcare/nope", "--pay-if", "benign", "--payout", "1"),
        "unknown model 'zkcare/nope'",
    ),
    "retired product": (
        ("policy", "issue", "2", "0x" + "34" * 20, "--coverage", "0.1"),
        "product 2 is retired",
    ),
    "coverage over unreserved": (
        ("policy", "issue", "1", "0x" + "34" * 20, "--coverage", "1000"),
        "less than the coverage 1000 ETH; fund it first",
    ),
    "accuracy above 1": (
        ("bounty", "create", "--amount", "1", "--min-accuracy", "1.5"),
        "Invalid value for '--min-accuracy': min accuracy must be within [0, 1], got 1.5",
    ),
    "unknown bounty": (("bounty", "refund", "99"), "unknown bounty 99"),
    "unknown model version": (
        ("model", "revoke", "zkcare/nope", "1"),
        "unknown model version zkcare/nope v1",
    ),
    "no guardian role": (
        ("model", "revoke", EVAL, "1"),
        "lacks GUARDIAN_ROLE on the ModelRegistry",
        "TEST::1",
    ),
}


@pytest.fixture(scope="module")
def bad_results(insured, run) -> dict[str, Proc]:
    """Every bad command at once (they only read the chain), two at a time."""

    def one(case: tuple[Any, ...]) -> Proc:
        args, account = case[0], case[2] if len(case) > 2 else "TEST::1"
        return run("manage", *args, account=account)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(BAD, pool.map(one, BAD.values()), strict=True))
    return results


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_get_one_clear_line(bad_results, case) -> None:
    line = one_line_error(bad_results[case])
    assert BAD[case][1] in line, line


def test_no_deployment_on_a_chain_is_one_line(tmp_path: Path) -> None:
    with Anvil(chain_id=4242) as other:
        line = one_line_error(ape_run(other, tmp_path, "manage", "show", account=None))
    assert line.startswith(
        "Error: no zkcare deployment for chain 4242; run `ape run deploy all` first"
    )
