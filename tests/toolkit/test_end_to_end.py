"""Every unseen zoo model end to end, as its owner, an insurer and a hospital would use it.

One anvil and one ``ape run deploy all`` serve the module. The model owner builds each zoo model
with ``python -m prover model build`` (the session's ``zoo_bundles``), proves a record with
``model prove`` and checks it with ``model verify``; the registrar (TEST::0) registers each
bundle with ``ape run manage model register BUNDLE --name acme/<model> --version 1``, which
checks the card against the bundle's real sample proof and verifies that proof through the
registry. The CLI proof is then verified through the registry too (``eth_call``), and a
tampered copy is rejected with ``ModelRegistryProofRejected``.

The insurer (TEST::1) creates an ETH pool, funds it, trusts the hospital's key and defines one
product per model, with the rule that model calls for: an ``at-least`` threshold on the
regression's output 0, ``--pay-if-class`` on the CNN's 10 logits, ``--output 1 --comparison
at-least --threshold 0`` on the [1, 3, 10]-input model's 2 logits. For each model two held-out
records whose float outputs fall on either side of the rule get a policy each, and the hospital
submits both claims over HTTP to an in-process relay pointed at the deployed ClaimSettlement:
one must end ``paid`` (the holder's balance rose by the payout), the other ``denied`` (the
claim is recorded on chain as denied), as the proved outputs dictate.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from ape_commands import Proc, ape_run, ok
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from prover.anvil import Anvil, free_port
from prover.attestation import record_nullifier
from prover.deploy import model_id
from prover.models.build import LoadedModel
from prover.models.card import ModelCard
from prover.operations import to_fixed
from prover.relay.devchain import ARG_MAX_IS, AT_LEAST, compiled
from prover.relay.states import JobState
from prover.zk.circuit import Bundle
from prover.zk.fields import fixed_to_float, to_signed
from prover.zk.proof import Proof

from .conftest import zkcare
from .zoo import ZooModel

pytestmark = pytest.mark.slow

MODELS = ["diabetes_mlp", "digits_cnn", "grouped_mlp"]
E18 = 10**18
COVERAGE = "0.5"
#: payout per model (ETH), distinct so a payment cannot be mistaken for another model's
PAYOUTS = {"diabetes_mlp": "0.1", "digits_cnn": "0.2", "grouped_mlp": "0.3"}
PROOF_REJECTED = keccak(text="ModelRegistryProofRejected(bytes32,uint32)")[:4]


def acme(name: str) -> str:
    return f"acme/{name}"


# ------------------------------------------------------------------------------------ helpers


def one_line_error(proc: Proc) -> str:
    """The command failed and its output holds exactly one `Error: ...` line, its last."""
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "Traceback" not in text
    errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, text[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr[-2000:]
    return errors[0]


def created_id(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, text
    return int(match.group(1))


def revert_selector(exc: ContractLogicError) -> bytes:
    data = exc.data if isinstance(exc.data, str) else ""
    return bytes.fromhex(data.removeprefix("0x")[:8])


def float_outputs(loaded: LoadedModel, row: Any) -> list[float]:
    """The float model's outputs (the bundle's ``source.onnx``) on a raw record."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        str(loaded.bundle.path / "source.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    card = loaded.card
    x = np.asarray(loaded.preprocessor.transform([float(v) for v in row]), dtype=np.float32)
    values = session.run(None, {card.input.name: x.reshape(card.input.shape)})
    return [float(v) for out in values for v in np.ravel(out)]


def in_ranges(row: Any, card: ModelCard) -> bool:
    return all(lo <= float(v) <= hi for v, (lo, hi) in zip(row, card.input.ranges, strict=True))


@dataclass(frozen=True)
class Plan:
    """One model's product and its two claims: ``pays`` is paid, ``misses`` denied."""

    name: str
    loaded: LoadedModel
    rule: tuple[str, ...]  # `product create` options
    pays_if: Callable[[list[float]], bool]  # the rule, on (proved or float) outputs
    pays: list[float]  # raw record whose outputs meet the rule
    misses: list[float]  # raw record whose outputs miss it
    tolerance: float  # how far quantized outputs may stray from the float model's

    @property
    def card(self) -> ModelCard:
        return self.loaded.card


def argmax(values: list[float]) -> int:
    return int(np.argmax(values))  # lowest index on ties, like ArgMaxIs


def margin(values: list[float]) -> float:
    top = sorted(values, reverse=True)
    return top[0] - top[1]


def make_plan(name: str, m: ZooModel, bundle: Bundle) -> Plan:
    """Pick two held-out records far on either side of the model's rule (float outputs)."""
    loaded = LoadedModel.open(bundle)
    card = loaded.card
    tol = max(card.fidelity.max_abs_error, card.fidelity.tolerance or 0.0) + 0.05
    rows = [list(map(float, r)) for r in m.held_out_rows if in_ranges(r, card)]
    outs = [float_outputs(loaded, r) for r in rows]
    if name == "diabetes_mlp":  # regression: pay if the predicted progression >= threshold
        hi, lo = int(np.argmax([o[0] for o in outs])), int(np.argmin([o[0] for o in outs]))
        threshold = round((outs[hi][0] + outs[lo][0]) / 2, 1)
        assert outs[hi][0] - threshold > tol and threshold - outs[lo][0] > tol
        return Plan(
            name,
            loaded,
            ("--comparison", "at-least", "--threshold", str(threshold)),
            lambda o: o[0] >= threshold,
            rows[hi],
            rows[lo],
            tol,
        )
    if name == "digits_cnn":  # 10 logits: pay if the predicted digit is K
        a = max(range(len(rows)), key=lambda i: margin(outs[i]))
        k = argmax(outs[a])
        others = [i for i in range(len(rows)) if argmax(outs[i]) != k]
        b = max(others, key=lambda i: margin(outs[i]))
        assert margin(outs[a]) > 2 * tol and margin(outs[b]) > 2 * tol
        return Plan(
            name,
            loaded,
            ("--pay-if-class", str(k)),
            lambda o: argmax(o) == k,
            rows[a],
            rows[b],
            tol,
        )
    # [malignant, benign] logits from a [1, 3, 10] input: pay if output 1 (benign) >= 0
    hi, lo = int(np.argmax([o[1] for o in outs])), int(np.argmin([o[1] for o in outs]))
    assert outs[hi][1] > tol and outs[lo][1] < -tol
    return Plan(
        name,
        loaded,
        ("--output", "1", "--comparison", "at-least", "--threshold", "0"),
        lambda o: o[1] >= 0,
        rows[hi],
        rows[lo],
        tol,
    )


class Served:
    """A relay's FastAPI app behind a real uvicorn server, in a thread."""

    def __init__(self, relay: Any) -> None:
        import uvicorn

        from prover.relay.api import create_app

        self.port = free_port()
        config = uvicorn.Config(
            create_app(relay, manage_relay=False),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return self
            self.thread.join(0.05)
        raise AssertionError("the relay's HTTP server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ------------------------------------------------------------------------------------ chain


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


@pytest.fixture(scope="module")
def w3(node: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="module")
def run(node: Anvil, out_dir: Path) -> Callable[..., Proc]:
    def _run(*args: str, account: str | None = "TEST::0") -> Proc:
        return ape_run(node, out_dir, *args, account=account)

    return _run


@pytest.fixture(scope="module")
def deployed(run, out_dir: Path) -> dict[str, Any]:
    ok(run("deploy", "all"))
    return json.loads((out_dir / "31337.json").read_text())


# Named e2e_*: ape's chain isolation tracks fixtures by name across the whole session, so a
# module-scoped "registry"/"settlement"/"hospital" here would upset the session-scoped ones of
# tests/contracts (their snapshots were reverted under them).
@pytest.fixture(scope="module")
def e2e_registry(w3: Web3, deployed):
    abi, _ = compiled("ModelRegistry")
    return w3.eth.contract(address=deployed["contracts"]["ModelRegistry"]["address"], abi=abi)


@pytest.fixture(scope="module")
def e2e_settlement(w3: Web3, deployed):
    abi, _ = compiled("ClaimSettlement")
    return w3.eth.contract(address=deployed["contracts"]["ClaimSettlement"]["address"], abi=abi)


# ------------------------------------------------------------------------------------ roles


@pytest.fixture(scope="module")
def registered(run, deployed, zoo_bundles, out_dir: Path) -> dict[str, Any]:
    """The registrar registers every zoo bundle as acme/<model> v1."""
    texts = {
        name: ok(
            run(
                "manage",
                "model",
                "register",
                str(zoo_bundles[name].path),
                "--name",
                acme(name),
                "--version",
                "1",
            )
        )
        for name in MODELS
    }
    return {"texts": texts, "manifest": json.loads((out_dir / "31337.json").read_text())}


@pytest.fixture(scope="module")
def e2e_hospital() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture(scope="module")
def plans(zoo, zoo_bundles) -> dict[str, Plan]:
    return {name: make_plan(name, zoo[name], zoo_bundles[name]) for name in MODELS}


@pytest.fixture(scope="module")
def insured(registered, run, plans, e2e_hospital, e2e_settlement) -> dict[str, Any]:
    """The insurer: a funded ETH pool trusting the hospital, one product per model, and a
    policy for each of its two records (fresh holders, empty balances)."""
    insurer = "TEST::1"
    pool = created_id(r"pool (\d+) created", ok(run("manage", "pool", "create", account=insurer)))
    ok(run("manage", "pool", "fund", str(pool), "4", account=insurer))
    ok(run("manage", "hospital", "trust", str(pool), e2e_hospital.address, account=insurer))
    out: dict[str, Any] = {"pool": pool, "products": {}, "policies": {}, "texts": {}}
    for name, plan in plans.items():
        text = ok(
            run(
                "manage",
                "product",
                "create",
                str(pool),
                "--model",
                acme(name),
                *plan.rule,
                "--payout",
                PAYOUTS[name],
                account=insurer,
            )
        )
        product = created_id(r"created product (\d+): ", text)
        out["products"][name] = product
        out["texts"][name] = text
        for side in ("pays", "misses"):
            holder = Account.create().address
            issued = ok(
                run(
                    "manage",
                    "policy",
                    "issue",
                    str(product),
                    holder,
                    "--coverage",
                    COVERAGE,
                    "--days",
                    "30",
                    account=insurer,
                )
            )
            policy = created_id(r"policy (\d+) issued to ", issued)
            out["policies"][(name, side)] = (policy, holder)
    out["pool_record"] = e2e_settlement.functions.getPool(pool).call()
    return out


@pytest.fixture(scope="module")
def claims(insured, plans, e2e_hospital, node: Anvil, w3: Web3, deployed, tmp_path_factory):
    """The hospital posts both claims of every model to a relay serving the three bundles."""
    from prover.relay.keys import RelayKeys
    from prover.relay.service import Relay, resolve_models
    from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings

    data = tmp_path_factory.mktemp("relay")
    submitter: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [submitter.address, hex(10 * E18)])  # type: ignore[arg-type]
    configs = [
        ModelConfig(
            name=name,
            version=1,
            bundle=plan.loaded.bundle.path,
            model_id="0x" + model_id(acme(name)).hex(),
        )
        for name, plan in plans.items()
    ]
    nullifier_secret = secrets.token_hex(32)
    settings = RelaySettings(
        rpc_urls=[node.url],
        chain_id=31337,
        settlement=deployed["contracts"]["ClaimSettlement"]["address"],
        hospital_key=KeyConfig(keystore=data / "unused-hospital.json"),
        submitter_key=KeyConfig(keystore=data / "unused-submitter.json"),
        nullifier_secret=nullifier_secret,
        data_key=secrets.token_hex(32),
        data_dir=data / "store",
        models=configs,
        workers=2,
        confirmations=1,
        poll_interval_s=0.05,
    )
    relay = Relay(settings, keys=RelayKeys(e2e_hospital, submitter), models=resolve_models(configs))
    relay.start()
    from prover.relay.auth import Scope

    _client, token = relay.store.create_client("e2e-hospital", [Scope.SUBMIT, Scope.READ])
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        with Served(relay) as served:
            anonymous = requests.post(f"{served.url}/v1/jobs", json={}, timeout=30)
            assert anonymous.status_code == 401, anonymous.text  # the relay answers its clients
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            ids = {}
            for (name, side), (policy, _) in insured["policies"].items():
                record = getattr(plans[name], side)
                body = {
                    "idempotency_key": f"e2e-{name}-{side}",
                    "policy_id": policy,
                    "model": name,
                    "model_version": 1,
                    "record_id": f"MRN-{name}-{side}",
                    "features": record,
                }
                response = session.post(f"{served.url}/v1/jobs", json=body, timeout=30)
                assert response.status_code == 202, response.text
                ids[(name, side)] = response.json()["job_id"]
            assert relay.wait_idle(300), relay.store.counts()
            for key, job_id in ids.items():
                response = session.get(f"{served.url}/v1/jobs/{job_id}", timeout=30)
                assert response.status_code == 200, response.text
                jobs[key] = response.json()
    finally:
        relay.stop()
    return {"jobs": jobs, "secret": bytes.fromhex(nullifier_secret), "submitter": submitter}


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", MODELS)
def test_register_checks_the_card_and_verifies_the_sample_proof_on_chain(
    name, registered, e2e_registry, zoo_bundles
) -> None:
    bundle = zoo_bundles[name]
    card = ModelCard.of(bundle)
    text = registered["texts"][name]
    assert f"model {acme(name)} v1 registered" in text
    assert (
        f"model {acme(name)} v1: sample proof ({card.instance_layout.count} instances) "
        "verified through the registry"
    ) in text
    # (verifier, status, instanceCount, inputIndex, outputIndex, outputCount, outputScale, ...)
    version = e2e_registry.functions.getModelVersion(model_id(acme(name)), 1).call()
    assert version[1] == 1  # Active
    assert tuple(version[2:7]) == card.instance_layout.registry_tuple()
    assert version[3] == card.instance_layout.commitment_index
    assert version[5] == card.output_count
    entry = registered["manifest"]["models"][acme(name)]
    assert entry["version"] == 1 and entry["verifier"] == version[0]
    assert tuple(entry["layout"]) == card.instance_layout.registry_tuple()


@pytest.mark.parametrize("name", MODELS)
def test_a_cli_proof_verifies_locally_and_through_the_registry(
    name, registered, e2e_registry, plans, tmp_path: Path
) -> None:
    plan = plans[name]
    bundle, card = plan.loaded.bundle, plan.card
    layout = card.instance_layout
    record = tmp_path / "record.json"
    record.write_text(json.dumps([plan.pays]))
    proof_file = tmp_path / "proof.json"
    done = zkcare("model", "prove", bundle.path, "--input", record, "--out", proof_file)
    assert zkcare("model", "verify", bundle.path, proof_file).stdout.strip() == "valid"
    proof = Proof.load(proof_file)
    assert len(proof.instances) == layout.count
    shown = re.search(r"commitment 0x([0-9a-f]{64}); outputs (.*)", done.stderr)
    assert shown, done.stderr
    commitment = int(shown.group(1), 16)
    printed = [float(v.split("=")[1]) for v in shown.group(2).split(", ")]
    assert len(printed) == card.output_count

    mid = model_id(acme(name))
    got_commitment, outputs = e2e_registry.functions.verify(
        mid, 1, proof.proof, list(proof.instances)
    ).call()
    assert got_commitment == commitment == layout.commitment_of(proof.proof, proof.instances)
    assert outputs == [to_signed(proof.instances[i]) for i in layout.output_indexes]
    decoded = [v / 2**layout.output_scale for v in outputs]
    assert decoded == [
        fixed_to_float(proof.instances[i], layout.output_scale) for i in layout.output_indexes
    ]
    assert decoded == pytest.approx(printed, rel=1e-5, abs=1e-9)  # `model prove` prints %g
    expected = float_outputs(plan.loaded, plan.pays)
    assert decoded == pytest.approx(expected, abs=plan.tolerance)  # the card's fidelity
    assert plan.pays_if(decoded)

    tampered = list(proof.instances)
    tampered[layout.output_indexes[-1]] += 1
    with pytest.raises(ContractLogicError) as info:
        e2e_registry.functions.verify(mid, 1, proof.proof, tampered).call()
    assert revert_selector(info.value) == PROOF_REJECTED, info.value
    # another commitment: the proof's first point (the input commitment) changed
    moved = bytearray(proof.proof)
    moved[31] ^= 0x01
    with pytest.raises(ContractLogicError) as info:
        e2e_registry.functions.verify(mid, 1, bytes(moved), list(proof.instances)).call()
    assert revert_selector(info.value) == PROOF_REJECTED, info.value


@pytest.mark.parametrize("name", MODELS)
def test_products_follow_the_cli_rules(name, insured, plans, e2e_settlement, e2e_registry) -> None:
    plan = plans[name]
    product = e2e_settlement.functions.getProduct(insured["products"][name]).call()
    mid, pool, version, retired, payout, (comparison, output, threshold) = product
    assert (mid, pool, version, retired) == (model_id(acme(name)), insured["pool"], 1, False)
    assert payout == int(float(PAYOUTS[name]) * E18)
    scale = plan.card.instance_layout.output_scale
    opts = dict(zip(plan.rule[::2], plan.rule[1::2], strict=True))
    if "--pay-if-class" in opts:
        assert (comparison, output, threshold) == (ARG_MAX_IS, int(opts["--pay-if-class"]), 0)
        assert "is the arg-max of the outputs" in insured["texts"][name]
    else:
        raw = to_fixed(float(opts["--threshold"]), scale, "threshold")
        assert (comparison, output, threshold) == (AT_LEAST, int(opts.get("--output", 0)), raw)
        assert f">= {float(opts['--threshold']):g} (raw {raw})" in insured["texts"][name]
    for side in ("pays", "misses"):
        policy, holder = insured["policies"][(name, side)]
        h, _, product_id, _, _ = e2e_settlement.functions.getPolicy(policy).call()
        assert (h, product_id) == (holder, insured["products"][name])
    # the pool reserves the six policies' coverage
    assert tuple(insured["pool_record"][2:]) == (4 * E18, 6 * int(float(COVERAGE) * E18))


@pytest.mark.parametrize("name", MODELS)
def test_claims_are_paid_or_denied_as_the_outputs_dictate(
    name, claims, insured, plans, e2e_settlement, w3: Web3
) -> None:
    plan = plans[name]
    payout = int(float(PAYOUTS[name]) * E18)
    coverage = int(float(COVERAGE) * E18)
    for side in ("pays", "misses"):
        job = claims["jobs"][(name, side)]
        policy, holder = insured["policies"][(name, side)]
        record = getattr(plan, side)
        # the relay reports the decision only; a plain model's proved outputs are public
        # instances, read back here from the claim's calldata
        assert job["decision"] == job["state"] and "outputs" not in job and "logit" not in job
        tx = w3.eth.get_transaction(job["tx_hash"])
        _, args = e2e_settlement.decode_function_input(tx["input"])
        instances = [int(v) for v in args["claim"]["instances"]]
        layout = plan.card.instance_layout
        outputs = [fixed_to_float(instances[i], layout.output_scale) for i in layout.output_indexes]
        # the proved outputs: the card's count, close to the float model's, and they decide
        assert len(outputs) == plan.card.output_count
        assert outputs == pytest.approx(float_outputs(plan.loaded, record), abs=plan.tolerance)
        pays = plan.pays_if(outputs)
        assert pays is (side == "pays"), (outputs, plan.rule)
        assert job["state"] == (JobState.PAID if pays else JobState.DENIED), job["reason"]
        assert job["model"] == name and job["policy_id"] == policy
        assert job["tx_hash"] and job["claim_id"]
        assert "features" not in job and "salt" not in job
        claim_id = job["claim_id"]
        # on chain: the claim consumed its record and commitment nullifiers either way
        nullifier = record_nullifier(claims["secret"], f"MRN-{name}-{side}")
        assert e2e_settlement.functions.claimOfRecord(policy, nullifier).call() == claim_id
        commitment = int(job["input_commitment"], 16)
        assert e2e_settlement.functions.claimOfCommitment(policy, commitment).call() == claim_id
        receipt = w3.eth.get_transaction_receipt(job["tx_hash"])
        assert receipt["status"] == 1
        paid_events = e2e_settlement.events.ClaimPaid().process_receipt(receipt, errors=DISCARD)
        denied_events = e2e_settlement.events.ClaimDenied().process_receipt(receipt, errors=DISCARD)
        _, _, _, reserved, paid = e2e_settlement.functions.getPolicy(policy).call()
        if pays:
            assert job["amount_wei"] == str(payout)
            assert w3.eth.get_balance(holder) == payout  # a fresh holder: exactly the payout
            assert (reserved, paid) == (coverage - payout, payout)
            (event,) = paid_events
            assert not denied_events
            assert (event["args"]["claimId"], event["args"]["policyId"]) == (claim_id, policy)
            assert (event["args"]["holder"], event["args"]["amount"]) == (holder, payout)
        else:
            assert job["amount_wei"] == "0"
            assert w3.eth.get_balance(holder) == 0
            assert (reserved, paid) == (coverage, 0)
            (event,) = denied_events
            assert not paid_events
            assert (event["args"]["claimId"], event["args"]["policyId"]) == (claim_id, policy)
        # the events say whether the claim paid, never the value the rule read
        assert set(event["args"]) <= {"claimId", "policyId", "holder", "amount"}


def test_register_refuses_a_bundle_whose_layout_count_was_altered(
    registered, run, e2e_registry, zoo_bundles, tmp_path: Path
) -> None:
    src = zoo_bundles["grouped_mlp"]
    copy = Path(shutil.copytree(src.path, tmp_path / src.path.name))
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["card"]["instance_layout"]["count"] == 2
    manifest["card"]["instance_layout"]["count"] = 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    name = "acme/grouped_mlp_altered"
    line = one_line_error(
        run("manage", "model", "register", str(copy), "--name", name, "--version", "1")
    )
    assert "its layout says 1 instances but its proof has 2" in line, line
    assert "--unsafe-skip-bundle-checks" in line, line
    assert e2e_registry.functions.getModelVersion(model_id(name), 1).call()[1] == 0  # Unregistered
