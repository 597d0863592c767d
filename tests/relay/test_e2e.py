"""50 claim jobs end to end: HTTP in, real EZKL proofs, on-chain payouts or denials."""

from __future__ import annotations

import time

import pytest

from prover.relay.states import JobState

from .support import job_body, make_records, wait_until

pytestmark = pytest.mark.slow
N_JOBS = 50


def test_fifty_jobs_end_to_end(make_relay, client_for, dev_chain, ledger):
    records = make_records(N_JOBS, seed=11)
    ledger.add_records(records)
    assert 10 < sum(r.pays for r in records) < 40  # both outcomes are exercised
    relay = make_relay()
    client = client_for(relay)
    policies = dev_chain.issue_policies(N_JOBS)

    started = time.monotonic()
    job_ids = []
    for i, (record, policy) in enumerate(zip(records, policies, strict=True)):
        response = client.post("/v1/jobs", json=job_body(record, policy, f"e2e-{i:04d}"))
        assert response.status_code == 202, response.text
        assert response.json()["created"] is True
        assert response.headers["Location"] == f"/v1/jobs/{response.json()['job_id']}"
        job_ids.append(response.json()["job_id"])
    assert relay.wait_idle(timeout=180), relay.store.counts()
    elapsed = time.monotonic() - started

    claim_ids = set()
    for job_id, record, policy in zip(job_ids, records, policies, strict=True):
        status = client.get(f"/v1/jobs/{job_id}").json()
        expected = JobState.PAID if record.pays else JobState.DENIED
        assert status["state"] == expected, (status["reason"], relay.store.history(job_id))
        assert status["policy_id"] == policy
        # the job reports its decision only, never the model's score
        assert status["decision"] == ("paid" if record.pays else "denied")
        assert "logit" not in status and "outputs" not in status
        assert status["tx_hash"] and status["block_number"] and status["gas_used"] > 300_000
        assert status["transactions"] == 1
        assert status["amount_wei"] == (str(10**16) if record.pays else "0")
        claim_ids.add(status["claim_id"])
        assert "features" not in status and "salt" not in status
        # final only after N (=2) confirmations: the final transition records the depth
        *_, (_, last, _, detail) = relay.store.history(job_id)
        assert last == expected and int(detail.split(": ")[1].split()[0]) >= 2, detail
    assert len(claim_ids) == N_JOBS

    # Exactly one settlement event per job, of the right kind, from the relay's transaction.
    events = dev_chain.claim_events()
    by_policy = {}
    for name, args, tx in events:
        assert args["policyId"] not in by_policy, f"two claims on policy {args['policyId']}"
        by_policy[args["policyId"]] = (name, tx)
    for job_id, record, policy in zip(job_ids, records, policies, strict=True):
        name, tx = by_policy[policy]
        assert name == ("ClaimPaid" if record.pays else "ClaimDenied")
        assert tx == relay.store.get(job_id).tx_hash

    # One transaction per job, nonces 0..49, all accepted.
    submitter = relay.keys.submitter.address
    assert dev_chain.w3.eth.get_transaction_count(submitter) == N_JOBS
    assert sorted(relay.store.get(j).nonce for j in job_ids) == list(range(N_JOBS))

    # The job list, metrics and health agree.
    listed = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert {j["job_id"] for j in listed} == set(job_ids)
    metrics = client.get("/metrics").text
    paid = sum(r.pays for r in records)
    assert f'zkcare_relay_jobs{{state="paid"}} {float(paid)}' in metrics
    assert f'zkcare_relay_jobs{{state="denied"}} {float(N_JOBS - paid)}' in metrics
    assert f"zkcare_relay_proving_seconds_count {float(N_JOBS)}" in metrics
    assert "zkcare_relay_submission_latency_seconds_bucket" in metrics
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["jobs"]["paid"] == paid
    print(f"\n50 jobs: {elapsed:.1f} s submission to last payout ({N_JOBS / elapsed:.2f} jobs/s)")


def test_idempotent_resubmission_returns_the_same_job(make_relay, client_for, dev_chain, ledger):
    records = make_records(1, seed=12)
    ledger.add_records(records)
    relay = make_relay(confirmations=1)
    client = client_for(relay)
    (policy,) = dev_chain.issue_policies(1)
    body = job_body(records[0], policy, "retry-key-0001")
    first = client.post("/v1/jobs", json=body).json()
    wait_until(
        lambda: relay.store.get(first["job_id"]).state.final, 60, "the job to finish", poll=0.1
    )
    again = client.post("/v1/jobs", json=body)  # e.g. the client never saw the first answer
    assert again.status_code == 202
    assert again.json() == {
        **first,
        "state": relay.store.get(first["job_id"]).state,
        "created": False,
    }
    assert relay.store.counts()[JobState.QUEUED] == 0
    assert [e for e in dev_chain.claim_events() if e[1]["policyId"] == policy] == [
        e for e in dev_chain.claim_events() if e[2] == relay.store.get(first["job_id"]).tx_hash
    ]
    assert sum(e[1]["policyId"] == policy for e in dev_chain.claim_events()) == 1


def test_same_record_twice_is_refused_at_intake_or_fails_at_simulation_without_a_transaction(
    make_relay, client_for, dev_chain, ledger
):
    records = make_records(1, seed=13)
    ledger.add_records(records)
    relay = make_relay(confirmations=1)
    client = client_for(relay)
    (policy,) = dev_chain.issue_policies(1)
    first = client.post("/v1/jobs", json=job_body(records[0], policy, "same-record-1")).json()
    wait_until(lambda: relay.store.get(first["job_id"]).state.final, 60, "the first claim")
    # the hospital submits the same patient record again under a new idempotency key: the
    # relay's store knows the record on this policy, so nothing is proved or sent
    body = job_body(records[0], policy, "same-record-2", record_id="MRN-same-record-1")
    again = client.post("/v1/jobs", json=body)
    assert again.status_code == 409
    assert f"already claimed by job {first['job_id']}" in again.json()["detail"]
    # another relay of the hospital (its own store) does not know it: the simulation refuses it
    other = make_relay(confirmations=1)
    second = client_for(other).post("/v1/jobs", json=body).json()
    wait_until(lambda: other.store.get(second["job_id"]).state.final, 60, "the second claim")
    job = other.store.get(second["job_id"])
    assert job.state == JobState.FAILED
    assert job.reason.startswith(
        f"simulation reverted: ClaimSettlementRecordAlreadyClaimed(policyId={policy}, "
    )
    assert job.nonce is None and other.store.attempts(job.id) == []  # no transaction at all
    moves = [b for _, b, _, _ in other.store.history(job.id)]
    assert moves == ["queued", "proving", "proved", "failed"]  # final: no retry loop
    time.sleep(1.0)
    assert other.store.get(job.id).state == JobState.FAILED
    assert dev_chain.w3.eth.get_transaction_count(other.keys.submitter.address) == 0
    assert dev_chain.w3.eth.get_transaction_count(relay.keys.submitter.address) == 1


def test_gas_limit_is_confirmed_by_the_simulation_and_measured_again_when_short(
    make_relay, client_for, dev_chain, ledger
):
    records = make_records(3, seed=14)
    ledger.add_records(records)
    relay = make_relay(confirmations=1)
    client = client_for(relay)
    measured: list[int] = []
    measure = relay.submitter._gas_used

    def spy(data: bytes) -> int:
        measured.append(measure(data))
        return measured[-1]

    relay.submitter._gas_used = spy
    policies = dev_chain.issue_policies(len(records))

    def settle(i: int):
        body = job_body(records[i], policies[i], f"gas-limit-{i:04d}")
        job_id = client.post("/v1/jobs", json=body).json()["job_id"]
        wait_until(lambda: relay.store.get(job_id).state.final, 60, f"claim {i}")
        job = relay.store.get(job_id)
        assert job.state == (JobState.PAID if records[i].pays else JobState.DENIED), job.reason
        return job, relay.store.attempts(job_id)[-1].gas_limit

    # first claim of the model version: simulated, then its gas measured (x 1.25)
    first, limit = settle(0)
    assert len(measured) == 1 and limit == -(-measured[0] * 125 // 100)
    assert first.gas_used <= limit
    # next claim: the simulation runs with exactly that limit and succeeds; nothing measured
    second, again = settle(1)
    assert len(measured) == 1 and again == limit and second.gas_used <= limit
    # a limit too small for the verifier: the capped simulation reverts (the registry reports
    # "proof rejected"), yet the claim is simulated again, measured and settled, not failed
    relay.submitter._gas_limits[("breast_cancer_lr", 1)] = 150_000
    third, fresh = settle(2)
    assert len(measured) == 2 and fresh > 150_000 and third.gas_used <= fresh
    assert relay.submitter._gas_limits[("breast_cancer_lr", 1)] == fresh
