"""Chain faults against a real anvil: stuck and dropped transactions, RPC down and failover,
a submitter out of funds, and a reorg that takes a receipt away."""

from __future__ import annotations

import time

import pytest

from prover.relay.chain import Broadcast, send_raw
from prover.relay.states import JobState

from .support import TcpProxy, job_body, make_records, wait_until

pytestmark = pytest.mark.slow


def _rpc(dev_chain, method, *params):
    response = dev_chain.w3.provider.make_request(method, list(params))
    assert "error" not in response, response
    return response.get("result")


def _submit(client, dev_chain, ledger, n, seed, prefix):
    records = make_records(n, seed=seed)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(n)
    ids = []
    for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
        response = client.post("/v1/jobs", json=job_body(record, policy, f"{prefix}-{i:04d}"))
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids, records


def _states(relay, ids):
    return [relay.store.get(j).state for j in ids]


def _assert_settled(relay, dev_chain, ids, records):
    for job_id, record in zip(ids, records, strict=True):
        job = relay.store.get(job_id)
        assert job.state == (JobState.PAID if record.pays else JobState.DENIED), (
            job.reason,
            relay.store.history(job_id),
        )
    nonces = sorted(relay.store.get(j).nonce for j in ids)
    assert nonces == list(range(len(ids)))  # contiguous, one per job
    address = relay.keys.submitter.address
    assert dev_chain.w3.eth.get_transaction_count(address) == len(ids)
    mined = {e[2] for e in dev_chain.claim_events()}
    assert all(relay.store.get(j).tx_hash in mined for j in ids)


def test_stuck_and_dropped_transactions_are_replaced_and_mined(
    make_relay, client_for, dev_chain, ledger
):
    relay = make_relay(stuck_timeout_s=1.5, confirmations=1, fee_bump_percent=12)
    client = client_for(relay)
    _rpc(dev_chain, "evm_setIntervalMining", 0)  # nothing is mined: transactions get stuck
    try:
        ids, records = _submit(client, dev_chain, ledger, 2, seed=31, prefix="stuck")
        wait_until(
            lambda: all(s == JobState.SUBMITTED for s in _states(relay, ids)), 60, "broadcasts"
        )
        # the node already has the newest transaction: "already known" counts as sent (a
        # replacement racing this read makes the old one underpriced: read again)
        outcomes = [send_raw(relay.rpc, relay.store.attempts(ids[0])[-1].raw_tx) for _ in range(3)]
        assert Broadcast.KNOWN in outcomes and outcomes[-1].accepted
        wait_until(lambda: all(len(relay.store.attempts(j)) >= 2 for j in ids), 60, "replacements")
        _rpc(dev_chain, "anvil_dropAllTransactions")  # ... and then the mempool loses them
        dropped = {j: len(relay.store.attempts(j)) for j in ids}
        wait_until(
            lambda: all(len(relay.store.attempts(j)) > dropped[j] for j in ids),
            60,
            "replacements of the dropped transactions",
        )
        assert all(s == JobState.SUBMITTED for s in _states(relay, ids))
    finally:
        _rpc(dev_chain, "evm_setIntervalMining", 1)
    assert relay.wait_idle(60), relay.store.counts()
    _assert_settled(relay, dev_chain, ids, records)
    for job_id in ids:
        attempts = relay.store.attempts(job_id)
        assert len({a.nonce for a in attempts}) == 1  # every replacement reuses the nonce
        for old, new in zip(attempts, attempts[1:], strict=False):
            assert new.max_fee * 100 >= old.max_fee * 110  # >= 10 % bump
            assert new.priority_fee * 100 >= old.priority_fee * 110
        assert relay.store.get(job_id).tx_hash in {a.tx_hash for a in attempts}
    metrics = client.get("/metrics").text
    assert 'zkcare_relay_retries_total{kind="replacement"}' in metrics
    assert 'zkcare_relay_retries_total{kind="replacement"} 0.0' not in metrics


def test_replacements_stop_at_the_configured_cap(make_relay, client_for, dev_chain, ledger):
    relay = make_relay(stuck_timeout_s=0.3, confirmations=1, max_replacements=2)
    client = client_for(relay)
    _rpc(dev_chain, "evm_setIntervalMining", 0)
    try:
        (job_id,), records = _submit(client, dev_chain, ledger, 1, seed=35, prefix="capped")
        wait_until(lambda: len(relay.store.attempts(job_id)) == 3, 60, "two replacements")
        time.sleep(2.0)  # several more stuck timeouts: re-broadcasts only, no new transaction
        assert len(relay.store.attempts(job_id)) == 3
    finally:
        _rpc(dev_chain, "evm_setIntervalMining", 1)
    assert relay.wait_idle(60)
    _assert_settled(relay, dev_chain, [job_id], records)
    metrics = client.get("/metrics").text
    assert 'zkcare_relay_retries_total{kind="replacement"} 2.0' in metrics
    assert 'zkcare_relay_retries_total{kind="rebroadcast"} 0.0' not in metrics


def test_rpc_down_then_back(make_relay, client_for, dev_chain, node, ledger):
    proxy = TcpProxy(node.port).start()
    relay = make_relay(rpc_urls=[proxy.url], confirmations=1)
    client = client_for(relay)
    wait_until(lambda: relay.submitter.chain_ok, 20, "the relay to reach the chain")
    records = make_records(3, seed=41)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(3)
    proxy.stop()
    try:
        ids = []
        for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
            response = client.post("/v1/jobs", json=job_body(record, policy, f"down-{i:04d}"))
            assert response.status_code == 202, response.text  # accepted while the chain is down
            assert response.json()["state"] == "held"  # its policy could not be checked
            ids.append(response.json()["job_id"])
        time.sleep(2.0)
        assert all(s == JobState.HELD for s in _states(relay, ids))  # jobs wait, not proved
        health = client.get("/healthz").json()
        assert health["status"] == "degraded" and health["chain"]["reachable"] is False
        assert health["chain"]["last_error"].startswith("no EVM node answers at")
        assert dev_chain.w3.eth.get_transaction_count(relay.keys.submitter.address) == 0
        assert "zkcare_relay_chain_up 0.0" in client.get("/metrics").text
    finally:
        proxy.start()  # same port
    assert relay.wait_idle(60), relay.store.counts()
    _assert_settled(relay, dev_chain, ids, records)
    assert client.get("/healthz").json()["status"] == "ok"
    proxy.stop()


def test_failover_to_the_second_rpc_keeps_nonces_contiguous(
    make_relay, client_for, dev_chain, node, ledger
):
    first, second = TcpProxy(node.port).start(), TcpProxy(node.port).start()
    relay = make_relay(rpc_urls=[first.url, second.url], confirmations=2)
    client = client_for(relay)
    try:
        ids, records = _submit(client, dev_chain, ledger, 6, seed=51, prefix="failover")
        wait_until(
            lambda: (
                any(s in (JobState.SUBMITTED, JobState.CONFIRMED) for s in _states(relay, ids))
                or any(s.final for s in _states(relay, ids))
            ),
            60,
            "a first transaction",
            poll=0.02,
        )
        first.stop()  # the primary endpoint dies mid-run
        assert relay.wait_idle(90), relay.store.counts()
        _assert_settled(relay, dev_chain, ids, records)
        assert relay.rpc.current == f"http://127.0.0.1:{second.port}"
        metrics = client.get("/metrics").text
        assert 'zkcare_relay_retries_total{kind="failover"} 0.0' not in metrics
    finally:
        first.stop()
        second.stop()


def test_submitter_out_of_funds_pauses_without_losing_jobs_or_nonces(
    make_relay, client_for, dev_chain, ledger
):
    relay = make_relay(fund=10**12, confirmations=1)  # far less than one claim's gas
    client = client_for(relay)
    ids, records = _submit(client, dev_chain, ledger, 3, seed=61, prefix="broke")
    wait_until(lambda: all(s == JobState.PROVED for s in _states(relay, ids)), 60, "proofs")
    wait_until(lambda: relay.submitter.paused_reason, 20, "the submitter to pause")
    time.sleep(1.5)
    assert all(s == JobState.PROVED for s in _states(relay, ids))
    address = relay.keys.submitter.address
    assert dev_chain.w3.eth.get_transaction_count(address, "pending") == 0  # nonce not advanced
    assert relay.store.max_nonce() is None  # no nonce was even signed
    health = client.get("/healthz").json()
    assert health["status"] == "degraded" and "out of funds" in health["paused"]
    assert "zkcare_relay_submitter_paused 1.0" in client.get("/metrics").text

    dev_chain.set_balance(address, 10**19)
    assert relay.wait_idle(60), relay.store.counts()
    _assert_settled(relay, dev_chain, ids, records)
    assert relay.submitter.paused_reason is None
    assert "zkcare_relay_submitter_paused 0.0" in client.get("/metrics").text


def test_a_transaction_the_node_rejects_holds_later_claims_visibly(
    make_relay, client_for, dev_chain, ledger, monkeypatch
):
    from prover.relay import submitter as submitter_module

    rejecting = True
    real_send_raw = submitter_module.send_raw

    def send_raw_or_reject(rpc, raw):
        return Broadcast.REJECTED if rejecting else real_send_raw(rpc, raw)

    monkeypatch.setattr(submitter_module, "send_raw", send_raw_or_reject)
    relay = make_relay(confirmations=1)
    client = client_for(relay)
    ids, records = _submit(client, dev_chain, ledger, 2, seed=65, prefix="rejected")
    wait_until(lambda: relay.submitter.paused_reason, 60, "the submitter to report the rejection")
    time.sleep(1.0)
    states = _states(relay, ids)
    assert states.count(JobState.SIGNED) == 1  # re-broadcast every pass, never abandoned
    assert JobState.SUBMITTED not in states  # the second claim was not signed past it
    health = client.get("/healthz").json()
    assert health["status"] == "degraded"
    assert health["paused"] == (
        "node rejects the transaction with nonce 0 (rejected); later claims wait behind it"
    )
    rejecting = False  # e.g. the node's policy was fixed
    assert relay.wait_idle(60), relay.store.counts()
    _assert_settled(relay, dev_chain, ids, records)
    assert client.get("/healthz").json()["status"] == "ok"


def test_receipt_lost_to_a_reorg_goes_back_to_submitted(make_relay, client_for, dev_chain, ledger):
    relay = make_relay(confirmations=6, stuck_timeout_s=3.0)
    client = client_for(relay)
    records = make_records(1, seed=71)
    ledger.add_records(records)
    (policy,) = dev_chain.issue_policies(1)
    snapshot = _rpc(dev_chain, "evm_snapshot")
    response = client.post("/v1/jobs", json=job_body(records[0], policy, "reorg-0001"))
    job_id = response.json()["job_id"]
    first = wait_until(
        lambda: (job := relay.store.get(job_id)).state == JobState.CONFIRMED and job,
        60,
        "the first receipt",
        poll=0.02,
    )
    assert _rpc(dev_chain, "evm_revert", snapshot) is True  # the block with the claim is gone
    assert relay.wait_idle(60), relay.store.counts()
    job = relay.store.get(job_id)
    assert job.state == (JobState.PAID if records[0].pays else JobState.DENIED)
    moves = [(a, b) for a, b, _, _ in relay.store.history(job_id)]
    assert ("confirmed", "submitted") in moves
    assert moves.count(("submitted", "confirmed")) == 2
    assert job.block_hash != first.block_hash
    events = [e for e in dev_chain.claim_events() if e[1]["policyId"] == policy]
    assert len(events) == 1 and events[0][2] == job.tx_hash
    assert 'zkcare_relay_retries_total{kind="reorg"} 1.0' in client.get("/metrics").text
