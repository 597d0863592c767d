"""Several relay processes on one PostgreSQL store and one chain: exactly one active submitter.

``kill -9`` of the active submitter hands submission to a standby within a few seconds, and the
chaos run (2 relays, 3 prover hosts, random ``kill -9`` of provers and of the active submitter)
finishes every job. Everything is checked on-chain: the submitter's mined nonces are contiguous
(no gap, none reused), each policy is settled once, by the transaction the store recorded.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import requests
from relay.support import make_records, wait_until

from prover.relay.auth import Scope
from prover.relay.engine_common import write_key_file

from .support import (
    ProverHost,
    assert_settled_on_chain,
    unfinished,
    wait_pending_nonce,
)

pytestmark = pytest.mark.slow


def test_kill9_of_the_active_submitter_hands_over_to_the_standby(
    scale_fleet, scale_chain, scale_pg
):
    fleet = scale_fleet()
    fleet.create_client()
    a, b = fleet.add(), fleet.add()
    for relay in (a, b):
        relay.start()
    for relay in (a, b):
        relay.wait_ready()
    active = fleet.wait_one_active()
    standby = b if active is a else a
    health = fleet.health(standby)
    assert health is not None and health["active_submitter"] is False
    assert health["submitter_epoch"] is None and health["status"] == "ok"
    epoch = fleet.health(active)["submitter_epoch"]
    assert epoch >= 1
    # who may not see it: /healthz is for admin clients only
    submit_only = fleet.create_client(Scope.SUBMIT)
    refused = requests.get(
        standby.url + "/healthz", headers={"Authorization": f"Bearer {submit_only}"}, timeout=5
    )
    assert refused.status_code == 403, refused.text

    records = make_records(6, seed=111)
    policies = scale_chain.issue_policies(len(records))
    # any instance takes jobs: the first three go to the standby, the active one submits them
    first = [fleet.post(standby, r, p, f"handover-{i}") for i, (r, p) in
             enumerate(zip(records[:3], policies[:3], strict=True))]  # fmt: skip
    assert all(first)
    wait_until(lambda: unfinished(fleet.dsn) == 0, 90, "the first three jobs final")
    w3 = scale_chain.w3
    sent = w3.eth.get_transaction_count(fleet.submitter.address, "pending")
    assert sent == 3

    killed_at = time.monotonic()
    active.kill9()
    rest = [fleet.post(standby, r, p, f"handover-{i + 3}") for i, (r, p) in
            enumerate(zip(records[3:], policies[3:], strict=True))]  # fmt: skip
    assert all(rest)
    wait_until(
        lambda: (fleet.health(standby) or {}).get("active_submitter"), 15, "the standby to hold"
    )
    holds_after = time.monotonic() - killed_at
    broadcast_after = wait_pending_nonce(w3, fleet.submitter.address, sent, 30) - killed_at
    print(
        f"takeover: lease after {holds_after:.2f} s, next transaction after {broadcast_after:.2f} s"
    )
    # within a few seconds: the lease's TTL (2 s) plus one renewal period and a proof
    assert holds_after < fleet.lease_ttl_s + fleet.lease_renew_s + 1.5, holds_after
    assert broadcast_after < fleet.lease_ttl_s + fleet.lease_renew_s + 4.0, broadcast_after

    active.start()  # the killed instance comes back as a standby
    active.wait_ready()
    wait_until(lambda: unfinished(fleet.dsn) == 0, 90, "every job final")
    assert fleet.active() == [standby]
    assert fleet.health(standby)["submitter_epoch"] == epoch + 1  # one new term, fenced
    assert_settled_on_chain(scale_chain, fleet.dsn, fleet.submitter.address, policies)
    assert "active submitter: holder" in standby.log_path.read_text()


def test_a_paused_submitter_wakes_up_fenced_off_and_signs_nothing(
    scale_fleet, scale_chain, scale_pg
):
    """SIGSTOP the active submitter (a long GC pause, a frozen VM) while claims wait: the
    standby takes over and signs them; on SIGCONT the old holder finds another epoch and stands
    down without signing."""
    fleet = scale_fleet()
    fleet.create_client()
    a, b = fleet.add(), fleet.add()
    for relay in (a, b):
        relay.start()
    for relay in (a, b):
        relay.wait_ready()
    active = fleet.wait_one_active()
    standby = b if active is a else a
    records = make_records(4, seed=112)
    policies = scale_chain.issue_policies(len(records))
    os.kill(active.proc.pid, signal.SIGSTOP)
    try:
        ids = [fleet.post(standby, r, p, f"pause-job-{i:03d}") for i, (r, p) in
               enumerate(zip(records, policies, strict=True))]  # fmt: skip
        assert all(ids)
        wait_until(
            lambda: (fleet.health(standby) or {}).get("active_submitter"), 15, "the takeover"
        )
        wait_until(lambda: unfinished(fleet.dsn) == 0, 90, "every job final")
        log_before = len(active.log_path.read_text())
    finally:
        os.kill(active.proc.pid, signal.SIGCONT)
    more = make_records(2, seed=113)
    more_policies = scale_chain.issue_policies(len(more))
    for i, (r, p) in enumerate(zip(more, more_policies, strict=True)):
        assert fleet.post(active, r, p, f"pause-more-{i:03d}")  # taken by the woken instance
    wait_until(lambda: unfinished(fleet.dsn) == 0, 90, "the later jobs final")
    woke = active.log_path.read_text()[log_before:]
    assert "standing down as submitter" in woke, woke[-3000:]
    assert "signed nonce" not in woke, woke[-3000:]
    assert fleet.active() == [standby]
    assert_settled_on_chain(
        scale_chain, fleet.dsn, fleet.submitter.address, policies + more_policies
    )


N_CHAOS = 50


def test_chaos_50_jobs_2_relays_3_prover_hosts_random_kill9(
    scale_fleet, scale_chain, scale_pg, diagnostic_bundle, tmp_path
):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    key = tmp_path / "prover.key"
    public = write_key_file(key)
    fleet = scale_fleet(
        engine={
            "dsn": scale_pg.dsn,
            "public_key": public,
            "parallelism": 3,
            "capacity": 6,
            "stalled_after_s": 2.0,
            "sweep_interval_s": 0.5,
            "poll_interval_s": 0.5,
        }
    )
    fleet.create_client()
    relays = [fleet.add(), fleet.add()]
    for relay in relays:
        relay.start()
    hosts = [
        ProverHost.start(scale_pg.dsn, diagnostic_bundle.path, key, tmp_path / f"host-{i}.log")
        for i in range(3)
    ]
    for relay in relays:
        relay.wait_ready(timeout=120)
    records = make_records(N_CHAOS, seed=114)
    policies = scale_chain.issue_policies(N_CHAOS)
    accepted: dict[int, str] = {}

    def submit_some(n: int) -> None:
        for i in range(len(accepted), min(N_CHAOS, len(accepted) + n)):
            alive = [r for r in relays if r.alive]
            job = fleet.post(rng.choice(alive), records[i], policies[i], f"chaos-{i:03d}")
            if job is None:
                return  # that relay died: the rest go in the next round
            accepted[i] = job

    plan = ["prover"] * 3 + ["submitter"] * 3
    rng.shuffle(plan)
    kills = {"prover": 0, "submitter": 0}
    started = time.monotonic()
    try:
        submit_some(20)
        for what in plan:
            time.sleep(rng.uniform(1.0, 4.0))
            if what == "prover":
                victim = rng.randrange(len(hosts))
                hosts[victim].kill9()
                hosts[victim] = ProverHost.start(
                    scale_pg.dsn, diagnostic_bundle.path, key, tmp_path / f"host-{victim}.log"
                )
            else:
                victim_relay = fleet.wait_one_active(timeout=30)
                victim_relay.kill9()
                victim_relay.start()  # comes back as a standby
            kills[what] += 1
            submit_some(6)
        for relay in relays:
            relay.wait_ready(timeout=120)
        while len(accepted) < N_CHAOS:
            submit_some(N_CHAOS)
        wait_until(lambda: unfinished(fleet.dsn) == 0, 240, f"every job final (seed {seed})")
    finally:
        for host in hosts:
            host.kill9()
    print(f"chaos: {kills} in {time.monotonic() - started:.0f} s (seed {seed})")
    assert len(set(accepted.values())) == N_CHAOS
    assert_settled_on_chain(scale_chain, fleet.dsn, fleet.submitter.address, policies)
