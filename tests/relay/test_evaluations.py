"""Research-bounty evaluations on the relay's private benchmark (``/v1/evaluations``).

anvil (0.5 s blocks) with a registry holding two evaluation circuits: version 1 is this relay's
private benchmark (40 held-out patients, written to a temp JSON file the way a hospital holds
its rows), version 2 the public 114-patient benchmark (another benchmark's circuit), and a
ResearchBounty. A relay serves the API behind uvicorn; researchers only send HTTP requests: the
relay proves (real EZKL proofs), commits and reveals with its submitter key, and the bounty pays
the researcher, who never sends a transaction. The last test scans every log line, response,
relay data directory and transaction of this module for the researchers' weights and the
benchmark rows.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import Web3
from web3.contract import Contract

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.deploy import model_id
from prover.exceptions import EvaluationConflict, RelayConfigError
from prover.models.bounty_eval import (
    Benchmark,
    Weights,
    context_scale,
    eval_layout,
    float_correct,
    held_out_benchmark,
    load_benchmark,
    weights_of,
)
from prover.models.breast_cancer import DIAGNOSTIC_MODEL
from prover.models.preprocess import Preprocessor
from prover.relay.api import create_app
from prover.relay.auth import Scope
from prover.relay.devchain import ETH, DevSender, compiled
from prover.relay.evaluations import (
    BELOW_MINIMUM,
    Evaluation,
    EvaluationState,
    PrivateBenchmark,
    resolve_benchmark,
)
from prover.relay.keys import RelayKeys
from prover.relay.service import Relay, ServedModel, resolve_models
from prover.relay.settings import (
    EvaluationConfig,
    KeyConfig,
    ModelConfig,
    RelaySettings,
    load_settings,
)
from prover.zk.circuit import Bundle

from .support import MODEL, PrivacyLedger, Record, bearer, served, token_for, wait_until

pytestmark = pytest.mark.slow

E18 = 10**18
EVAL = model_id("zkcare/bounty_eval")
#: The hospital's private benchmark: the last 40 held-out patients.
PRIVATE_ROWS = slice(74, 114)
#: Blocks between commit and reveal (2 s at 0.5 s blocks: long enough to see ``committed``).
REVEAL_DELAY = 4
SECRET = "cd" * 32
DATA_KEY = "5e" * 32
WEIGHTS_MODEL, ROWS_MODEL = "researcher weights", "private benchmark rows"


@dataclass
class EvalApiChain:
    node: Anvil
    w3: Web3
    sponsor: DevSender
    registry: Contract
    bounty: Contract
    scale: int

    def create(self, min_correct: int, *, version: int = 1, scale: int | None = None,
               deadline_s: int = 86_400) -> int:  # fmt: skip
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + deadline_s
        scale = self.scale if scale is None else scale
        params = (ETH, E18, EVAL, version, scale, min_correct, deadline)
        data = self.bounty.encode_abi("createBounty", [params])
        self.sponsor.send({"to": self.bounty.address, "data": data, "value": E18})
        return int(self.bounty.functions.bountyCount().call())

    def record(self, bounty_id: int) -> Any:
        return self.bounty.functions.getBounty(bounty_id).call()

    def awards(self, bounty_id: int) -> list[Any]:
        logs = self.bounty.events.BountyAwarded().get_logs(from_block=0)
        return [a for a in logs if a["args"]["bountyId"] == bounty_id]


@dataclass
class EvalApiWitness:
    """What this module must never leak (weights, rows) and where it looked (the scan)."""

    ledger: PrivacyLedger = field(default_factory=PrivacyLedger)
    data_dirs: list[Path] = field(default_factory=list)


class NoClaims:
    """A prover backend for a relay that gets no claim jobs here."""

    capacity = 1
    parallelism = 1

    def submit(self, task: Any) -> Any:
        raise AssertionError("no claim jobs in the evaluation tests")

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def eval_api_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Benchmark]:
    """The private benchmark as a hospital holds it: a JSON file of standardized rows."""
    full = held_out_benchmark()
    rows = full.features[PRIVATE_ROWS]
    labels = ((full.signs[PRIVATE_ROWS] + 1) / 2).astype(int)
    path = tmp_path_factory.mktemp("hospital") / "benchmark.json"
    path.write_text(
        json.dumps(
            {"features": [[float(v) for v in r] for r in rows], "labels": [int(v) for v in labels]}
        )
    )
    return path, load_benchmark(path)


@pytest.fixture(scope="module")
def eval_api_private(eval_api_rows: tuple[Path, Benchmark]) -> PrivateBenchmark:
    path, _ = eval_api_rows
    return resolve_benchmark(EvaluationConfig(benchmark=path, bounty_contract="0x" + "11" * 20))


@pytest.fixture(scope="module")
def eval_api_witness(
    eval_api_rows: tuple[Path, Benchmark], eval_api_private: PrivateBenchmark
) -> EvalApiWitness:
    witness = EvalApiWitness()
    scale = eval_api_private.bundle.input_scale
    witness.ledger.models[WEIGHTS_MODEL] = (Preprocessor.identity(31), scale)
    witness.ledger.models[ROWS_MODEL] = (Preprocessor.identity(30), scale)
    for i, row in enumerate(eval_api_rows[1].features):
        witness.ledger.add_records(
            Record(i, values, None, 0.0, ROWS_MODEL) for values in printed_forms(row)
        )
    return witness


def printed_forms(values: Any) -> list[list[float]]:
    """``values`` as the scan's records: as they are, and as numpy prints them (float32's
    shortest text, 8 digits in arrays), so those texts are looked for too."""
    return [
        [float(v) for v in values],
        [float(str(np.float32(v))) for v in values],
        [float(np.format_float_positional(v, precision=8)) for v in values],
    ]


@pytest.fixture(scope="module")
def eval_api_chain(
    eval_api_private: PrivateBenchmark, eval_bundle: Bundle
) -> Iterator[EvalApiChain]:
    """anvil with a registry (v1: the private benchmark, v2: the public one) and a bounty."""
    with Anvil(block_time=0.5) as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        sponsor = DevSender(w3, Account.from_key(DEV_PRIVATE_KEY))
        reg_abi, reg_code = compiled("ModelRegistry")
        registry = sponsor.deploy(reg_code, reg_abi, sponsor.account.address)
        role = registry.functions.REGISTRAR_ROLE().call()
        grant = registry.encode_abi("grantRole", [role, sponsor.account.address])
        sponsor.send({"to": registry.address, "data": grant})
        for version, bundle in ((1, eval_api_private.bundle), (2, eval_bundle)):
            verifier = sponsor.send({"data": bundle.verifier_artifact["bytecode"]})
            address = verifier["contractAddress"]
            sha = bundle.manifest["sha256"]
            args = [
                EVAL,
                version,
                address,
                Web3.keccak(w3.eth.get_code(address)),
                bytes.fromhex(sha["onnx"]),
                bytes.fromhex(sha["vk"]),
                eval_layout(bundle),
            ]
            sponsor.send(
                {"to": registry.address, "data": registry.encode_abi("registerModel", args)}
            )
        b_abi, b_code = compiled("ResearchBounty")
        bounty = sponsor.deploy(b_code, b_abi, registry.address, REVEAL_DELAY)
        yield EvalApiChain(
            node, w3, sponsor, registry, bounty, context_scale(eval_api_private.bundle)
        )


@pytest.fixture(scope="module")
def eval_api_models(diagnostic_bundle: Bundle) -> dict[tuple[str, int], ServedModel]:
    return resolve_models([ModelConfig(name=MODEL, bundle=diagnostic_bundle.path)])


MakeEvalRelay = Callable[..., Relay]


@pytest.fixture(scope="module")
def eval_api_make_relay(
    eval_api_chain: EvalApiChain,
    eval_api_private: PrivateBenchmark,
    eval_api_models: dict[tuple[str, int], ServedModel],
    eval_api_witness: EvalApiWitness,
    relay_log: Path,
    ledger: PrivacyLedger,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MakeEvalRelay]:
    """Start an in-process relay with ``[evaluation]``; ``data_dir``/``submitter`` to resume."""
    relays: list[Relay] = []

    def make(*, data_dir: Path | None = None, submitter: LocalAccount | None = None) -> Relay:
        if submitter is None:
            submitter = Account.create()
            eval_api_chain.w3.provider.make_request(  # type: ignore[attr-defined]
                "anvil_setBalance", [submitter.address, hex(10 * E18)]
            )
        for led in (ledger, eval_api_witness.ledger):
            led.add_secret("evaluation submitter key", submitter.key.hex())
        data_dir = data_dir or tmp_path_factory.mktemp("eval-relay")
        settings = RelaySettings(
            rpc_urls=[eval_api_chain.node.url],
            settlement=eval_api_chain.registry.address,  # no claims here
            hospital_key=KeyConfig(keystore=data_dir / "unused-hospital.json"),
            submitter_key=KeyConfig(keystore=data_dir / "unused-submitter.json"),
            nullifier_secret=SECRET,
            data_key=DATA_KEY,
            data_dir=data_dir,
            workers=1,
            poll_interval_s=0.05,
            evaluation=EvaluationConfig(
                benchmark=Path("/nonexistent/not-read-when-resolved.json"),
                bounty_contract=eval_api_chain.bounty.address,
                timeout_s=60,
            ),
        )
        relay = Relay(
            settings,
            keys=RelayKeys(Account.create(), submitter),
            worker=NoClaims(),
            models=eval_api_models,
            benchmark=eval_api_private,
        )
        relay.start()
        relays.append(relay)
        eval_api_witness.data_dirs.append(data_dir)
        return relay

    yield make
    for relay in relays:
        if relay.started:
            relay.stop()
        ledger.add_path("evaluation relay data", relay.settings.data_dir)


@dataclass
class EvalApi:
    """A served relay and an HTTP client that records every answer for the privacy scans."""

    relay: Relay
    url: str
    witness: EvalApiWitness
    ledger: PrivacyLedger
    token: str = ""

    def __post_init__(self) -> None:
        if not self.token:
            self.token = token_for(self.relay)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), **bearer(self.token)}
        response = requests.request(method, self.url + path, timeout=30, headers=headers, **kwargs)
        self.ledger.add_response(response)
        self.witness.ledger.add_response(response)
        return response

    def post(self, body: dict[str, Any] | str) -> requests.Response:
        if isinstance(body, str):  # raw JSON text (NaN, …)
            headers = {"Content-Type": "application/json"}
            return self.request("POST", "/v1/evaluations", data=body, headers=headers)
        return self.request("POST", "/v1/evaluations", json=body)

    def status(self, evaluation_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/v1/evaluations/{evaluation_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def follow(self, evaluation_id: str, timeout: float = 240) -> tuple[dict[str, Any], list[str]]:
        """Poll until final; the last status and every state seen (each one checked: no count
        before the award)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(evaluation_id)
            if not seen or seen[-1] != body["state"]:
                seen.append(body["state"])
            if body["state"] != "awarded":
                assert body["correct"] is None and body["benchmark_size"] is None, body
            if body["state"] in ("awarded", "failed"):
                return body, seen
            assert time.monotonic() < deadline, f"still {body['state']} after {timeout} s"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def eval_api_served(
    eval_api_make_relay: MakeEvalRelay, eval_api_witness: EvalApiWitness, ledger: PrivacyLedger
) -> Iterator[EvalApi]:
    relay = eval_api_make_relay()
    with served(relay) as url:
        yield EvalApi(relay, url, eval_api_witness, ledger)


@pytest.fixture
def eval_api_weights(eval_api_witness: EvalApiWitness, request: pytest.FixtureRequest) -> Weights:
    """A researcher's private model: the diagnostic weights, each scaled by 1 + ~1e-9 (unique
    text for the privacy scan)."""
    base = weights_of(DIAGNOSTIC_MODEL)
    rng = random.Random(request.node.name)
    flat = [v * (1 + rng.uniform(1e-9, 9e-9)) for v in base.flat()]
    weights = Weights(np.asarray(flat[:30], np.float64), flat[30])
    eval_api_witness.ledger.add_records(
        Record(0, values, None, 0.0, WEIGHTS_MODEL) for values in printed_forms(flat)
    )
    return weights


def body_of(bounty_id: int, researcher: str, weights: Weights, **extra: Any) -> dict[str, Any]:
    return {
        "bounty_id": bounty_id,
        "researcher": researcher,
        "weights": [float(v) for v in weights.w],
        "bias": float(weights.b),
        **extra,
    }


def sent_by(chain: EvalApiChain, address: str) -> int:
    return int(chain.w3.eth.get_transaction_count(address))


# ----------------------------------------------------------------------------------- tests


def test_eval_api_weights_are_proved_and_the_researcher_is_paid(
    eval_api_served, eval_api_chain, eval_api_rows, eval_api_weights
):
    chain, api = eval_api_chain, eval_api_served
    correct = float_correct(eval_api_rows[1], eval_api_weights)
    bounty_id = chain.create(min_correct=correct - 1)
    researcher = Account.create().address  # holds no ETH and sends nothing
    submitter = api.relay.keys.submitter.address
    before = sent_by(chain, submitter)

    accepted = api.post(body_of(bounty_id, researcher, eval_api_weights))
    assert accepted.status_code == 202, accepted.text
    evaluation_id = accepted.json()["evaluation_id"]
    assert accepted.headers["Location"] == f"/v1/evaluations/{evaluation_id}"
    again = api.post(body_of(bounty_id, researcher, eval_api_weights))
    assert again.status_code == 409
    assert again.json()["detail"].startswith(f"bounty {bounty_id}: researcher {researcher}")

    final, seen = api.follow(evaluation_id)
    assert final["state"] == "awarded", final
    assert "proving" in seen and "committed" in seen and seen[-1] == "awarded", seen
    [award] = chain.awards(bounty_id)
    assert award["args"]["researcher"] == researcher
    assert final["correct"] == award["args"]["metric"] >= correct - 1
    assert final["benchmark_size"] == 40 and final["amount_wei"] == str(E18)
    record = chain.record(bounty_id)
    assert record[2] == 2 and record[9] == researcher  # Awarded, to the researcher
    assert chain.w3.eth.get_balance(researcher) == E18  # exactly the bounty: it paid no gas
    assert sent_by(chain, researcher) == 0
    assert sent_by(chain, submitter) - before == 2  # the relay's commit and reveal
    for name in ("commit_tx", "reveal_tx"):
        tx = chain.w3.eth.get_transaction(final[name])
        assert tx["from"] == submitter and tx["to"] == chain.bounty.address
    assert final["block_number"] == award["blockNumber"]
    assert api.relay.evaluations.get(evaluation_id).failures == 0  # no attempt went wrong
    assert api.post(body_of(bounty_id, researcher, eval_api_weights)).status_code == 409


def test_eval_api_below_the_minimum_fails_without_the_count(
    eval_api_served, eval_api_chain, eval_api_rows, eval_api_weights
):
    chain, api = eval_api_chain, eval_api_served
    correct = float_correct(eval_api_rows[1], eval_api_weights)
    bounty_id = chain.create(min_correct=correct + 1)
    submitter = api.relay.keys.submitter.address
    before = sent_by(chain, submitter)
    researcher = Account.create().address
    accepted = api.post(body_of(bounty_id, researcher, eval_api_weights))
    assert accepted.status_code == 202, accepted.text
    final, _ = api.follow(accepted.json()["evaluation_id"])
    assert final["state"] == "failed" and final["reason"] == BELOW_MINIMUM
    assert final["correct"] is None and final["commit_tx"] is None
    assert sent_by(chain, submitter) == before  # nothing was sent
    assert chain.record(bounty_id)[2] == 1  # still open
    # a failed evaluation does not block the researcher's next try
    retry = api.post(body_of(bounty_id, researcher, eval_api_weights))
    assert retry.status_code == 202, retry.text
    assert api.follow(retry.json()["evaluation_id"])[0]["reason"] == BELOW_MINIMUM


def test_eval_api_weights_outside_the_circuit_are_refused_at_once(
    eval_api_served, eval_api_chain, eval_api_weights
):
    """The evaluation card's ranges (what the circuit is sized for) are checked before anything
    is queued: a 422 naming the weight, never its value; nothing proved, nothing sent."""
    chain, api = eval_api_chain, eval_api_served
    bounty_id = chain.create(min_correct=30)
    big = Weights(eval_api_weights.w * 20, eval_api_weights.b)  # beyond the card's ±8
    response = api.post(body_of(bounty_id, Account.create().address, big))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "is outside the evaluation circuit's range [-8, 8]" in detail, detail
    assert str(float(big.w[0])) not in detail
    assert chain.record(bounty_id)[2] == 1  # still open


def _raw_body(bounty_id: int, researcher: str, weights: Weights, token: str) -> str:
    values = [repr(float(v)) for v in weights.w]
    values[3] = token
    return (
        f'{{"bounty_id": {bounty_id}, "researcher": "{researcher}", '
        f'"weights": [{", ".join(values)}], "bias": {float(weights.b)!r}}}'
    )


def test_eval_api_bad_requests_are_422_with_one_specific_line(
    eval_api_served, eval_api_chain, eval_api_weights
):
    chain, api, w = eval_api_chain, eval_api_served, eval_api_weights
    good = Account.create().address
    open_id = chain.create(min_correct=30)
    other_benchmark = chain.create(min_correct=30, version=2)
    wrong_scale = chain.create(min_correct=30, scale=chain.scale - 1)
    expiring, reclaimed = chain.create(30, deadline_s=20), chain.create(30, deadline_s=20)
    chain.w3.provider.make_request("evm_increaseTime", [40])  # type: ignore[attr-defined]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[attr-defined]
    chain.sponsor.send(
        {"to": chain.bounty.address, "data": chain.bounty.encode_abi("reclaim", [reclaimed])}
    )
    mixed = good[:2] + good[2:].swapcase()  # a wrong EIP-55 checksum (unless all digits)
    cases: list[tuple[dict[str, Any] | str, str]] = [
        (
            body_of(open_id, good, Weights(w.w[:29], w.b)),
            "weights: need 30 numbers (one per standardized feature), got 29",
        ),
        (_raw_body(open_id, good, w, "NaN"), "weights[3]: Input should be a finite number"),
        (_raw_body(open_id, good, w, "Infinity"), "weights[3]: Input should be a finite number"),
        (body_of(open_id, good, w, bias=1e39), "bias is outside [-1e+06, 1e+06]"),
        (
            body_of(open_id, good, Weights(np.where(np.arange(30) == 7, -2e6, w.w), w.b)),
            "weights[7] is outside [-1e+06, 1e+06]",
        ),
        (
            body_of(open_id, good, Weights(np.where(np.arange(30) == 5, 9.0, w.w), w.b)),
            "weights[5] is outside the evaluation circuit's range [-8, 8]",
        ),
        (body_of(open_id, good, w, bias=-8.5), "bias is outside the evaluation circuit's range"),
        (body_of(open_id, "0x1234", w), "researcher: not an Ethereum address"),
        (body_of(open_id, mixed, w), "researcher: mixed-case address with a wrong EIP-55"),
        (body_of(open_id, "0x" + "00" * 20, w), "researcher: the zero address cannot be paid"),
        (
            body_of(999, good, w),
            f"bounty 999: no such bounty on ResearchBounty {chain.bounty.address}",
        ),
        (
            body_of(other_benchmark, good, w),
            f"bounty {other_benchmark}: its evaluation model 0x{EVAL.hex()} version 2 is not "
            "this relay's benchmark circuit (registered verifying key sha256 ",
        ),
        (
            body_of(wrong_scale, good, w),
            f"bounty {wrong_scale}: its contextScale {chain.scale - 1} is not this circuit's",
        ),
        (body_of(expiring, good, w), f"bounty {expiring}: closed: its deadline "),
        (body_of(reclaimed, good, w), f"bounty {reclaimed}: closed: reclaimed by its sponsor"),
        ({**body_of(open_id, good, w), "extra": 1}, "extra: Extra inputs are not permitted"),
    ]
    for body, expected in cases:
        response = api.post(body)
        assert response.status_code == 422, (expected, response.text)
        detail = response.json()["detail"]
        assert detail.startswith(expected) and "\n" not in detail, (expected, detail)
    assert api.request("GET", "/v1/evaluations/" + "ab" * 16).status_code == 404
    assert api.request("GET", "/v1/evaluations/not-an-id").status_code == 422
    assert chain.record(open_id)[2] == 1


def test_eval_api_needs_a_token_with_the_right_scope_and_shows_only_the_callers_evaluations(
    eval_api_served,
):
    api = eval_api_served
    relay = api.relay
    evaluations = relay.evaluations
    assert evaluations is not None
    owner = token_for(relay, Scope.SUBMIT, Scope.READ)
    now = time.time()
    record = Evaluation(  # a finished evaluation of the owner's (the runner leaves it alone)
        id=uuid.uuid4().hex,
        bounty_id=1,
        researcher=Account.create().address,
        state=EvaluationState.FAILED,
        created_at=now,
        updated_at=now,
        reason="stored by the test",
        client_id=relay.store.authenticate(owner).id,
    )
    with evaluations._lock:
        evaluations._dir(record.id).mkdir(mode=0o700)
        evaluations._save(record)
    revoked = token_for(relay)
    relay.store.revoke_client(relay.store.authenticate(revoked).id)

    def call(method: str, path: str, headers: dict[str, str]) -> requests.Response:
        response = requests.request(method, api.url + path, json={}, headers=headers, timeout=30)
        api.ledger.add_response(response)
        return response

    mine = f"/v1/evaluations/{record.id}"
    for method, path in (("POST", "/v1/evaluations"), ("GET", mine)):
        for headers in ({}, bearer(f"zkr_{'0' * 16}_{'A' * 43}"), bearer(revoked)):
            response = call(method, path, headers)
            assert response.status_code == 401, (method, path, response.text)
        for scope in Scope:
            response = call(method, path, bearer(token_for(relay, scope)))
            expected = {
                ("POST", Scope.SUBMIT): 422,  # authorised; the empty body is refused
                ("GET", Scope.READ): 404,  # authorised to read, but not the owner
                ("GET", Scope.ADMIN): 200,
            }.get((method, scope), 403)
            assert response.status_code == expected, (method, path, scope, response.text)
    owned = call("GET", mine, bearer(owner))
    assert owned.status_code == 200 and owned.json()["reason"] == "stored by the test"
    assert call("POST", "/v1/evaluations", bearer(owner)).status_code == 422

    # A 409 names the existing evaluation only to its own client.
    awarded = dataclasses.replace(
        record, id=uuid.uuid4().hex, bounty_id=2, state=EvaluationState.AWARDED, reason=None
    )
    with evaluations._lock:
        evaluations._dir(awarded.id).mkdir(mode=0o700)
        evaluations._save(awarded)
    other = relay.store.authenticate(token_for(relay, Scope.SUBMIT)).id
    with pytest.raises(EvaluationConflict) as theirs:
        evaluations._admit(2, awarded.researcher, other)
    assert awarded.id not in str(theirs.value) and theirs.value.evaluation_id is None
    with pytest.raises(EvaluationConflict) as own:
        evaluations._admit(2, awarded.researcher, awarded.client_id)
    assert own.value.evaluation_id == awarded.id and awarded.id in str(own.value)


def test_eval_api_resumes_after_a_restart_and_pays_once(
    eval_api_make_relay, eval_api_chain, eval_api_rows, eval_api_weights, ledger, eval_api_witness
):
    chain = eval_api_chain
    first = eval_api_make_relay()
    submitter = first.keys.submitter
    bounty_id = chain.create(min_correct=float_correct(eval_api_rows[1], eval_api_weights) - 1)
    researcher = Account.create().address
    with served(first) as url:
        api = EvalApi(first, url, eval_api_witness, ledger)
        accepted = api.post(body_of(bounty_id, researcher, eval_api_weights))
        assert accepted.status_code == 202, accepted.text
        evaluation_id = accepted.json()["evaluation_id"]
        wait_until(lambda: api.status(evaluation_id)["state"] == "committed", 180, "the commitment")
        first.stop()  # between commit and reveal
    assert chain.record(bounty_id)[2] == 1
    second = eval_api_make_relay(data_dir=first.settings.data_dir, submitter=submitter)
    with served(second) as url:
        api = EvalApi(second, url, eval_api_witness, ledger)
        final, _ = api.follow(evaluation_id)
    assert final["state"] == "awarded", final
    assert len(chain.awards(bounty_id)) == 1
    assert chain.w3.eth.get_balance(researcher) == E18
    assert sent_by(chain, submitter.address) == 2  # one commit, one reveal, over both runs
    assert second.evaluations is not None
    assert second.evaluations.get(evaluation_id).failures == 0


def test_eval_api_settings_are_checked_at_start(eval_api_rows, tmp_path):
    base: dict[str, Any] = {
        "rpc_urls": ["http://127.0.0.1:8545"],
        "settlement": "0x" + "22" * 20,
        "hospital_key": {"keystore": "/k/h.json"},
        "submitter_key": {"keystore": "/k/s.json"},
        "nullifier_secret": SECRET,
    }
    config = tmp_path / "relay.toml"
    config.write_text(f'[evaluation]\nbenchmark = "{eval_api_rows[0]}"\nbounty_contract = "0x12"\n')
    with pytest.raises(RelayConfigError) as bad:
        load_settings(config, **base)
    assert bad.value.problems == [
        "evaluation.bounty_contract (env ZKCARE_RELAY_EVALUATION__BOUNTY_CONTRACT): "
        "Value error, not an Ethereum address"
    ]
    address = "0x" + "ab" * 20
    settings = load_settings(
        None, **base, evaluation={"benchmark": str(eval_api_rows[0]), "bounty_contract": address}
    )
    assert settings.evaluation is not None
    assert settings.evaluation.bounty_contract == Web3.to_checksum_address(address)

    malformed = tmp_path / "rows.json"
    row = ["12.345678x"] + [0.5] * 29
    malformed.write_text(json.dumps({"features": [row], "labels": [1]}))
    with pytest.raises(RelayConfigError) as unreadable:
        resolve_benchmark(EvaluationConfig(benchmark=malformed, bounty_contract=address))
    [line] = unreadable.value.problems
    assert line.startswith(f"evaluation.benchmark: {malformed}: not a benchmark file")
    assert "12.345678" not in line  # a malformed value is not quoted
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"features": [[0.5] * 29], "labels": [1]}))
    with pytest.raises(RelayConfigError, match=r"needs N rows of 30 features"):
        resolve_benchmark(EvaluationConfig(benchmark=short, bounty_contract=address))


def test_eval_api_absent_without_an_evaluation_section(eval_api_models, tmp_path):
    settings = RelaySettings(
        rpc_urls=["http://127.0.0.1:9"],
        settlement="0x" + "22" * 20,
        hospital_key=KeyConfig(keystore=tmp_path / "h.json"),
        submitter_key=KeyConfig(keystore=tmp_path / "s.json"),
        nullifier_secret=SECRET,
        data_key=DATA_KEY,
        data_dir=tmp_path / "relay",
    )
    relay = Relay(
        settings,
        keys=RelayKeys(Account.create(), Account.create()),
        worker=NoClaims(),
        models=eval_api_models,
    )
    try:
        client = TestClient(create_app(relay, manage_relay=False), headers=bearer(token_for(relay)))
        assert client.post("/v1/evaluations", json={}).status_code == 404
        assert "/v1/evaluations" not in client.get("/openapi.json").json()["paths"]
    finally:
        relay.store.close()


def test_eval_api_no_weights_or_rows_anywhere(
    eval_api_served, eval_api_chain, eval_api_witness, relay_log
):
    """Runs last in this module: the researchers' weights and the private rows, in every
    encoding the ledger knows, in no log, response, relay data directory or transaction."""
    witness = eval_api_witness
    for data_dir in witness.data_dirs:
        for record in data_dir.glob("evaluations/*/evaluation.json"):
            if json.loads(record.read_text())["state"] in ("awarded", "failed"):
                assert not (record.parent / "weights.sealed").exists(), record
                assert not (record.parent / "submission" / "work").exists(), record
        witness.ledger.add_path("evaluation relay data", data_dir)
    witness.ledger.add_path("logs", relay_log)
    assert witness.ledger.collect_chain(eval_api_chain.w3, "evaluation chain") >= 10
    researchers = [r for r in witness.ledger.records if r.model == WEIGHTS_MODEL]
    assert len(researchers) >= 4 * 3
    planted = PrivacyLedger(
        models=dict(witness.ledger.models), records=list(witness.ledger.records)
    )
    planted.add_text("planted weights", repr(np.asarray(researchers[0].features)))
    row = next(r for r in witness.ledger.records if r.model == ROWS_MODEL)
    planted.add_text("planted row", " ".join(str(np.float32(v)) for v in row.features))
    found = planted.scan()
    assert any(f.startswith("planted weights: ") for f in found)
    assert any(f.startswith("planted row: ") for f in found)
    findings = witness.ledger.scan()
    assert findings == [], "\n".join(findings[:20])
