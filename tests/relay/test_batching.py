"""The relay batches claims into ``submitClaimsBatched`` (real EZKL proofs, anvil).

The module's chain gets the diagnostic model's generated batch verifier registered next to its
verifier (as ``ape run deploy all`` does); the zoo model has none, so its claims go singly.
"""

from __future__ import annotations

import secrets
import sqlite3

import pytest
import requests
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, keccak

from prover.relay import abi
from prover.relay.chain import RevertDecoder
from prover.relay.devchain import DevChain, compiled
from prover.relay.settings import RelaySettings
from prover.relay.states import JobState
from prover.relay.store import SCHEMA, SCHEMA_VERSION, JobStore
from prover.zk.circuit import Bundle

from .support import (
    ZOO_MODEL,
    job_body,
    make_model_records,
    make_records,
    schema_before_instances,
    state_counts,
    store_rows,
    token_for,
    wait_until,
)

THREE_DAYS = 3 * 86_400


@pytest.fixture(scope="module")
def batching_verifier(dev_chain: DevChain, diagnostic_bundle: Bundle) -> str:
    """The diagnostic model's batch verifier, deployed and registered for its version (once per
    chain: a second set-up of this fixture on the session's chain finds it registered)."""
    registered = dev_chain.registry.functions.getBatchVerifier(
        dev_chain.model_id, dev_chain.model_version
    ).call()
    registered = registered[0] if isinstance(registered, (list, tuple)) else registered
    if int(registered, 16) != 0:
        return str(registered)
    artifact = diagnostic_bundle.batch_verifier_artifact
    receipt = dev_chain.sender.send({"data": artifact["bytecode"]})
    address = str(receipt["contractAddress"])
    code_hash = bytes(keccak(bytes(dev_chain.w3.eth.get_code(address))))  # type: ignore[arg-type]
    args = [dev_chain.model_id, dev_chain.model_version, address, code_hash]
    dev_chain.sender.send(
        {
            "to": dev_chain.registry.address,
            "data": dev_chain.registry.encode_abi("registerBatchVerifier", args),
        }
    )
    return address


def _post(client, bodies: list[dict]) -> list[str]:
    ids = []
    for body in bodies:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


def _claim_events(dev_chain: DevChain, policies: list[int]) -> dict[int, tuple[str, str]]:
    """``policy -> (event name, tx hash)`` for ``policies``; fails on a second claim."""
    out: dict[int, tuple[str, str]] = {}
    for name, args, tx in dev_chain.claim_events():
        if args["policyId"] in policies:
            assert args["policyId"] not in out, f"policy {args['policyId']} claimed twice"
            out[args["policyId"]] = (name, tx)
    return out


# ------------------------------------------------------------------------------- no chain


def test_batch_settings_default_to_single_claims_and_are_bounded(tmp_path):
    base = {
        "rpc_urls": ["http://127.0.0.1:8545"],
        "settlement": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "hospital_key": {"keystore": tmp_path / "h.json"},
        "submitter_key": {"keystore": tmp_path / "s.json"},
        "nullifier_secret": "ab" * 32,
    }
    settings = RelaySettings(**base)
    assert settings.batch_max_size == 1 and settings.batch_max_wait_s == 5.0
    with pytest.raises(ValueError, match="batch_max_size\n.*less than or equal to 20"):
        RelaySettings(**base, batch_max_size=21)
    with pytest.raises(ValueError, match="batch_max_wait_s\n.*greater than or equal to 0"):
        RelaySettings(**base, batch_max_wait_s=-1)


def test_embedded_registry_abi_matches_the_compiled_contract():
    compiled_abi, _ = compiled("ModelRegistry")
    assert abi.extract_registry(compiled_abi) == abi.MODEL_REGISTRY_ABI, (
        "ModelRegistry changed: regenerate prover/relay/abi.py (python -m prover.relay.abi)"
    )
    names = {e.get("name") for e in abi.CLAIM_SETTLEMENT_ABI}
    assert {"submitClaimsBatched", "registry", "ModelRegistryBatchRejected"} <= names


def test_decoder_names_the_batch_error_and_its_index():
    decoder = RevertDecoder(abi.CLAIM_SETTLEMENT_ABI)
    selector = function_signature_to_4byte_selector(
        "ModelRegistryBatchRejected(bytes32,uint32,uint256)"
    )
    data = selector + abi_encode(["bytes32", "uint32", "uint256"], [b"\x01" * 32, 1, 2**256 - 1])
    error = decoder.decode_error(data)
    assert error is not None and error.name == "ModelRegistryBatchRejected"
    assert error.args == {"modelId": b"\x01" * 32, "version": 1, "index": 2**256 - 1}
    assert decoder.decode_error(b"\xde\xad\xbe\xef") is None
    assert decoder.decode_error(selector + b"\x00") is None  # malformed: no guessing


def test_a_version_4_store_gains_attempt_jobs_and_pruning_drops_the_links(tmp_path):
    path = tmp_path / "v4.sqlite3"
    v4 = schema_before_instances(SCHEMA)
    with sqlite3.connect(path) as conn:
        conn.executescript(v4)
        for job_id in ("j1", "j2"):
            conn.execute(
                "INSERT INTO jobs (id, idempotency_key, request_mac, state, policy_id, model,"
                " model_version, record_nullifier, created_at, updated_at, final_at)"
                " VALUES (?, ?, 'mac', 'paid', ?, 'breast_cancer_lr', 1, x'01', 1.0, 1.0, 1.0)",
                (job_id, f"key-{job_id}-0000", job_id[-1]),
            )
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = JobStore(path)
    try:
        (version,) = store._conn().execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION == 6
        with store._tx() as conn:  # one batch transaction for both jobs, keyed by the first
            conn.execute(
                "INSERT INTO attempts (tx_hash, job_id, nonce, raw_tx, max_fee, priority_fee,"
                " gas_limit, created_at) VALUES ('0xab', 'j1', 0, x'00', 1, 1, 1, 1.0)"
            )
            for slot, job_id in enumerate(("j1", "j2")):
                conn.execute(
                    "INSERT INTO attempt_jobs (tx_hash, job_id, slot) VALUES ('0xab', ?, ?)",
                    (job_id, slot),
                )
        assert store.attempt_counts(["j1", "j2", "j3"]) == {"j1": 1, "j2": 1}
        assert store.prune_final(before=2.0) == 2
        assert store._conn().execute("SELECT COUNT(*) FROM attempt_jobs").fetchone()[0] == 0
    finally:
        store.close()


# ------------------------------------------------------------------------------- real proofs


@pytest.mark.slow
def test_five_claims_settle_in_one_batch_transaction_cheaper_than_singles(
    make_relay, client_for, dev_chain, batching_verifier, ledger
):
    records = make_records(6, seed=131)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(6)
    single = make_relay()  # batch_max_size = 1: today's behaviour
    [alone] = _post(client_for(single), [job_body(records[5], policies[5], "batching-alone")])
    relay = make_relay(batch_max_size=5, batch_max_wait_s=600)
    client = client_for(relay)
    ids = _post(
        client,
        [
            job_body(r, p, f"batching-{i}")
            for i, (r, p) in enumerate(zip(records[:5], policies[:5], strict=True))
        ],
    )
    assert single.wait_idle(timeout=120), single.store.counts()
    assert relay.wait_idle(timeout=180), relay.store.counts()

    jobs = [relay.store.get(j) for j in ids]
    for job, record in zip(jobs, records[:5], strict=True):
        expected = JobState.PAID if record.pays else JobState.DENIED
        assert job.state == expected, (job.reason, relay.store.history(job.id))
        status = client.get(f"/v1/jobs/{job.id}").json()
        assert status["transactions"] == 1 and status["tx_hash"] == jobs[0].tx_hash
    assert {j.tx_hash for j in jobs} == {jobs[0].tx_hash} and {j.nonce for j in jobs} == {0}
    assert dev_chain.w3.eth.get_transaction_count(relay.keys.submitter.address) == 1
    events = _claim_events(dev_chain, policies[:5])
    for policy, record in zip(policies[:5], records[:5], strict=True):
        assert events[policy] == (
            "ClaimPaid" if record.pays else "ClaimDenied",
            jobs[0].tx_hash,
        )
    assert sorted(j.claim_id for j in jobs) == list(range(jobs[0].claim_id, jobs[0].claim_id + 5))

    one = single.store.get(alone)
    assert one.state in (JobState.PAID, JobState.DENIED) and one.gas_used
    receipt = dev_chain.w3.eth.get_transaction_receipt(jobs[0].tx_hash)
    per_claim = receipt["gasUsed"] / 5
    assert per_claim < one.gas_used, (per_claim, one.gas_used)
    assert per_claim < 0.8 * one.gas_used  # one pairing for five proofs


@pytest.mark.slow
def test_two_relays_on_postgresql_send_one_batch_from_the_lease_holder(
    make_relay, client_for, dev_chain, batching_verifier, ledger, pgstore_dsn
):
    """Batching on the shared store: jobs taken in by either instance go out as one batch,
    signed by the instance holding the submitter lease, each settled once."""
    records = make_records(3, seed=137)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(3)
    data_key = secrets.token_hex(32)
    ledger.add_secret("batching shared data key", data_key)
    relays = [
        make_relay(store_dsn=pgstore_dsn, data_key=data_key, batch_max_size=3, batch_max_wait_s=600)
        for _ in range(2)
    ]
    leases = [relay.lease for relay in relays]
    assert None not in leases
    wait_until(lambda: any(lease.holding for lease in leases), 20, "a lease holder")
    active = next(relay for relay in relays if relay.lease.holding)
    token = token_for(relays[0])
    ids = []
    for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
        client = client_for(relays[i % 2], token=token)
        ids += _post(client, [job_body(record, policy, f"batching-pg-{i}")])
    assert active.wait_idle(timeout=180), active.store.counts()

    jobs = [active.store.get(j) for j in ids]
    for job, record in zip(jobs, records, strict=True):
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), job.reason
    assert {j.tx_hash for j in jobs} == {jobs[0].tx_hash} and {j.nonce for j in jobs} == {0}
    submitter = active.keys.submitter.address
    assert dev_chain.w3.eth.get_transaction_count(submitter) == 1
    events = _claim_events(dev_chain, policies)
    assert sorted(events) == sorted(policies)
    assert {tx for _name, tx in events.values()} == {jobs[0].tx_hash}


@pytest.mark.slow
def test_claims_of_a_version_without_batch_verifier_go_singly(
    make_relay,
    client_for,
    dev_chain,
    batching_verifier,
    zoo_product,
    regression_zoo,
    relay_models,
    ledger,
):
    records = make_model_records(
        ZOO_MODEL, relay_models[(ZOO_MODEL, 1)].loaded, regression_zoo.held_out_rows, 2, seed=17
    )
    ledger.add_records(records)
    policies = dev_chain.issue_policies(2, product_id=zoo_product.product_id)
    relay = make_relay(batch_max_size=5, batch_max_wait_s=600)
    ids = _post(
        client_for(relay),
        [
            job_body(r, p, f"batching-zoo-{i}")
            for i, (r, p) in enumerate(zip(records, policies, strict=True))
        ],
    )
    assert relay.wait_idle(timeout=120), relay.store.counts()  # no wait: nothing to batch
    jobs = [relay.store.get(j) for j in ids]
    assert all(j.state in (JobState.PAID, JobState.DENIED) for j in jobs), [j.reason for j in jobs]
    assert len({j.tx_hash for j in jobs}) == 2 and sorted(j.nonce for j in jobs) == [0, 1]


def _rpc(dev_chain: DevChain, method: str, *params: object) -> object:
    response = dev_chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response.get("result")


@pytest.mark.slow
def test_a_stuck_batch_is_replaced_at_its_nonce_and_a_reorg_sends_it_back(
    make_relay, client_for, dev_chain, batching_verifier, ledger
):
    records = make_records(2, seed=139)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(2)
    relay = make_relay(batch_max_size=2, batch_max_wait_s=600, stuck_timeout_s=1.5, confirmations=6)
    client = client_for(relay)
    batcher = relay.submitter.batcher
    snapshot = _rpc(dev_chain, "evm_snapshot")
    _rpc(dev_chain, "evm_setIntervalMining", 0)  # nothing is mined: the batch gets stuck
    try:
        ids = _post(
            client,
            [
                job_body(r, p, f"batching-stuck-{i}")
                for i, (r, p) in enumerate(zip(records, policies, strict=True))
            ],
        )
        wait_until(
            lambda: all(
                (j := relay.store.get(i)).state == JobState.SUBMITTED
                and len(batcher.attempts(j)) >= 2
                for i in ids
            ),
            60,
            "a replacement of the stuck batch",
        )
    finally:
        _rpc(dev_chain, "evm_setIntervalMining", 1)
    first = wait_until(
        lambda: (
            all(relay.store.get(i).state == JobState.CONFIRMED for i in ids)
            and relay.store.get(ids[0])
        ),
        60,
        "the batch's first receipt",
        poll=0.02,
    )
    assert _rpc(dev_chain, "evm_revert", snapshot) is True  # the block with the batch is gone
    assert relay.wait_idle(60), relay.store.counts()

    jobs = [relay.store.get(i) for i in ids]
    for job, record in zip(jobs, records, strict=True):
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), job.reason
        moves = [(a, b) for a, b, _, _ in relay.store.history(job.id)]
        assert ("confirmed", "submitted") in moves  # the reorg, for each job of the batch
        assert moves.count(("submitted", "confirmed")) == 2
    assert jobs[0].block_hash != first.block_hash and jobs[0].tx_hash == jobs[1].tx_hash
    attempts = batcher.attempts(jobs[0])
    assert attempts == batcher.attempts(jobs[1]) and len({a.nonce for a in attempts}) == 1
    for old, new in zip(attempts, attempts[1:], strict=False):
        assert new.max_fee * 100 >= old.max_fee * 110  # >= 10 % bump, same nonce
    assert jobs[0].tx_hash in {a.tx_hash for a in attempts}
    for attempt in attempts:  # every replacement covers both jobs, in the same slots
        assert batcher.slots(attempt.tx_hash) == {ids[0]: 0, ids[1]: 1}
    events = _claim_events(dev_chain, policies)
    assert {tx for _, tx in events.values()} == {jobs[0].tx_hash} and len(events) == 2
    status = client.get(f"/v1/jobs/{ids[1]}").json()
    assert status["transactions"] == len(attempts)
    metrics = client.get("/metrics").text
    assert 'zkcare_relay_retries_total{kind="reorg"} 1.0' in metrics
    assert 'zkcare_relay_retries_total{kind="replacement"} 0.0' not in metrics


@pytest.mark.slow
def test_a_bad_claim_fails_with_its_reason_and_the_rest_of_the_batch_pays(
    make_relay, client_for, dev_chain, batching_verifier, ledger
):
    """Six claims: one on a policy released after its grace, one with a tampered proof. The
    first fails with the policy's error, the second (refused by the batch verifier) alone with
    the single verifier's; the other four settle in one batch."""
    records = make_records(6, seed=137)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(5)
    [released] = dev_chain.issue_policies(1, ttl_s=600)
    policies.insert(1, released)
    tampered = 3
    relay = make_relay(batch_max_size=6, batch_max_wait_s=600)
    client = client_for(relay)
    bodies = [
        job_body(r, p, f"batching-bad-{i}")
        for i, (r, p) in enumerate(zip(records, policies, strict=True))
    ]
    ids = _post(client, bodies[:5])
    wait_until(
        lambda: relay.store.counts()[JobState.PROVED] == 5, 120, "five jobs proved (waiting)"
    )
    # The proof of job 3 is altered in the store (the seam: a corrupted proof).
    proof = relay.store.get(ids[tampered]).proof
    assert proof is not None
    bad = bytearray(proof)
    bad[len(bad) // 2] ^= 0x01
    with relay.store._tx() as conn:
        cur = conn.execute(
            "UPDATE jobs SET proof = ? WHERE id = ? AND state = 'proved'",
            (bytes(bad), ids[tampered]),
        )
        assert cur.rowcount == 1
    # The policy expires, its grace passes and its reservation is released.
    w3 = dev_chain.w3
    w3.provider.make_request("evm_increaseTime", [600 + THREE_DAYS + 60])
    w3.provider.make_request("evm_mine", [])
    dev_chain.sender.send(
        {
            "to": dev_chain.settlement.address,
            "data": dev_chain.settlement.encode_abi("releasePolicy", [released]),
        }
    )
    ids += _post(client, bodies[5:])  # the sixth fills the batch
    assert relay.wait_idle(timeout=180), relay.store.counts()

    jobs = [relay.store.get(j) for j in ids]
    assert jobs[1].state == JobState.FAILED
    assert jobs[1].reason.startswith("simulation reverted: ClaimSettlementPolicyExpired(")
    assert f"policyId={released}" in jobs[1].reason
    assert any("claim 1 of a batch of 6" in (d or "") for *_, d in relay.store.history(ids[1]))
    assert jobs[tampered].state == JobState.FAILED
    assert jobs[tampered].reason.startswith("simulation reverted: ModelRegistryProofRejected(")
    good = [j for i, j in enumerate(jobs) if i not in (1, tampered)]
    for job in good:
        record = records[ids.index(job.id)]
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), job.reason
    assert len({j.tx_hash for j in good}) == 1 and {j.nonce for j in good} == {0}
    assert w3.eth.get_transaction_count(relay.keys.submitter.address) == 1  # failures cost nothing
    events = _claim_events(dev_chain, policies)
    assert set(events) == {j.policy_id for j in good}
    assert all(tx == good[0].tx_hash for _, tx in events.values())


#: (crash point, what the store and the node hold when the relay dies)
CRASH_PLAN = [
    ("batch_after_sign:1", "one transaction for five jobs persisted, never broadcast"),
    ("batch_after_broadcast:1", "the node has the batch, the store says signed"),
    ("batch_before_final:1", "the batch is mined and confirmed, no job marked paid/denied"),
]


@pytest.mark.slow
def test_kill_minus_9_around_a_batch_settles_every_job_once(
    tmp_path, node, dev_chain, batching_verifier, diagnostic_bundle, hospital, ledger
):
    """A real ``serve`` subprocess batching five claims per transaction is SIGKILLed right after
    signing a batch, right after its broadcast, and after it was mined but before finalization;
    after each restart every job reaches one final state and the chain shows one claim each."""
    from .test_crash import _relay_process

    records = make_records(10, seed=149)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(10)
    relay, db, submitter = _relay_process(
        tmp_path, node, dev_chain, diagnostic_bundle, hospital, ledger, "batch crashes"
    )
    relay.env["ZKCARE_RELAY_BATCH_MAX_SIZE"] = "5"
    relay.env["ZKCARE_RELAY_BATCH_MAX_WAIT_S"] = "600"
    bodies = [
        job_body(r, p, f"batch-crash-{i:04d}")
        for i, (r, p) in enumerate(zip(records, policies, strict=True))
    ]
    accepted: dict[int, str] = {}

    def submit_all() -> None:
        for i, body in enumerate(bodies):
            try:
                response = requests.post(
                    relay.url + "/v1/jobs", json=body, timeout=10, headers=relay.headers
                )
            except requests.RequestException:
                return  # died under us: resubmitted after the restart
            ledger.add_response(response)
            assert response.status_code == 202, response.text
            assert accepted.setdefault(i, response.json()["job_id"]) == response.json()["job_id"]

    try:
        for action, why in CRASH_PLAN:
            relay.start(crash_at=action)
            try:
                relay.wait_ready()
                submit_all()
            except AssertionError:
                pass  # crashed before serving (recovery work hit the point first)
            assert relay.wait_exit(timeout=120) == -9, f"{action} ({why}): {relay.tail()}"
            if action == "batch_after_sign:1":
                signed = store_rows(db, "SELECT state, nonce, tx_hash FROM jobs")
                batch = [r for r in signed if r["state"] == "signed"]
                assert len(batch) == 5 and len({(r["nonce"], r["tx_hash"]) for r in batch}) == 1
                links = store_rows(db, "SELECT slot FROM attempt_jobs")
                assert sorted(r["slot"] for r in links) == [0, 1, 2, 3, 4]
                assert dev_chain.w3.eth.get_transaction_count(submitter.address) == 0
        relay.start()
        relay.wait_ready()
        submit_all()
        wait_until(
            lambda: (
                len(accepted) == 10
                and all(s in ("paid", "denied", "failed") for s in state_counts(db))
            ),
            180,
            "every job final",
        )
    finally:
        relay.terminate()

    log = relay.log_path.read_text()
    for action, _ in CRASH_PLAN:
        assert f"crash point {action.split(':')[0]} reached" in log
    jobs = {r["id"]: r for r in store_rows(db, "SELECT * FROM jobs")}
    assert set(jobs) == set(accepted.values())
    events = _claim_events(dev_chain, policies)
    for i, record in enumerate(records):
        job = jobs[accepted[i]]
        assert job["state"] == ("paid" if record.pays else "denied"), (job["reason"], i)
        assert events[policies[i]] == (
            "ClaimPaid" if record.pays else "ClaimDenied",
            job["tx_hash"],
        )
    # two batches of five: two transactions, nonces 0 and 1, none wasted
    by_nonce: dict[int, set[str]] = {}
    for job in jobs.values():
        by_nonce.setdefault(job["nonce"], set()).add(job["tx_hash"])
    assert sorted(by_nonce) == [0, 1] and all(len(h) == 1 for h in by_nonce.values())
    assert sorted(r["nonce"] for r in jobs.values()) == [0] * 5 + [1] * 5
    assert dev_chain.w3.eth.get_transaction_count(submitter.address) == 2
    for hashes in by_nonce.values():
        receipt = dev_chain.w3.eth.get_transaction_receipt(next(iter(hashes)))
        assert receipt["status"] == 1
