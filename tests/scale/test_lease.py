"""The submitter lease against a real PostgreSQL: one holder among contenders, expiry hand-over,
renewal, fencing of a stale holder, and the keeper that runs the submitter only while holding."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from pgcluster import PgCluster, free_port

from prover.exceptions import LeaseLost, LeaseUnavailable, RelayConfigError
from prover.relay.lease import TABLE, LeaseKeeper, SubmitterLease
from prover.relay.settings import load_settings


def _lease(pg: PgCluster, name: str, ttl_s: float = 1.0, holder: str | None = None):
    lease = SubmitterLease(pg.dsn, ttl_s=ttl_s, name=name, holder=holder)
    lease.ensure_schema()
    return lease


def test_one_holder_at_a_time_among_contenders(scale_pg):
    name = f"contend-{uuid.uuid4().hex[:6]}"
    leases = [_lease(scale_pg, name, ttl_s=2.0, holder=f"relay-{i}") for i in range(6)]
    barrier = threading.Barrier(len(leases))
    wins: list[list[tuple[str, int]]] = []
    lock = threading.Lock()
    epochs: dict[str, int | None] = {lease.holder: None for lease in leases}

    def contend(lease: SubmitterLease, rnd: list[tuple[str, int]]) -> None:
        barrier.wait()
        term = lease.acquire(epochs[lease.holder])
        if term is not None:
            with lock:
                rnd.append((lease.holder, term.epoch))

    for i in range(12):
        rnd: list[tuple[str, int]] = []
        if i == 6:  # the holder stops renewing: after expiry exactly one other takes over
            (gone,) = [h for h, e in epochs.items() if e is not None]
            active = [lease for lease in leases if lease.holder != gone]
            time.sleep(2.1)
        else:
            active = leases if i < 6 else [lease for lease in leases if lease.holder != gone]
        barrier = threading.Barrier(len(active))
        threads = [threading.Thread(target=contend, args=(lease, rnd)) for lease in active]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(rnd) == 1, (i, rnd)  # never two holders, never none while contended
        holder, epoch = rnd[0]
        for h in epochs:
            epochs[h] = epoch if h == holder else None
        wins.append(rnd[0])
        time.sleep(0.05)
    assert len({h for h, _ in wins[:6]}) == 1 and {e for _, e in wins[:6]} == {1}  # renewed
    assert len({h for h, _ in wins[6:]}) == 1 and {e for _, e in wins[6:]} == {2}
    assert wins[6][0] != wins[0][0]
    for lease in leases:
        lease.close()


def test_expiry_hands_the_lease_over_with_a_new_epoch(scale_pg):
    a = _lease(scale_pg, "expiry", ttl_s=1.0, holder="a")
    b = _lease(scale_pg, "expiry", ttl_s=1.0, holder="b")
    first = a.acquire()
    assert first is not None and first.epoch == 1 and 0.8 < first.remaining_s <= 1.0
    t0 = time.monotonic()
    while (term := b.acquire()) is None:
        assert time.monotonic() - t0 < 5, "b never got the lease"
        time.sleep(0.05)
    waited = time.monotonic() - t0
    assert 0.7 < waited < 3.0, waited  # only once a's lease (database clock) ran out
    assert term.epoch == 2
    row = a.current()
    assert row is not None and (row.holder, row.epoch) == ("b", 2)
    assert a.acquire(1) is None  # the old holder cannot renew its old term


def test_the_holder_renews_and_keeps_its_epoch(scale_pg):
    a = _lease(scale_pg, "renew", ttl_s=2.0, holder="a")
    b = _lease(scale_pg, "renew", ttl_s=2.0, holder="b")
    term = a.acquire()
    assert term is not None
    for _ in range(8):  # 4 s in all: well past the first expiry
        time.sleep(0.5)
        renewed = a.acquire(term.epoch)
        assert renewed is not None and renewed.epoch == term.epoch
        assert renewed.remaining_s > 1.9  # expires_at moved forward
        assert b.acquire() is None
    assert a.check(term.epoch, margin_s=0.5) > 0.5
    a.release(term.epoch)  # a clean stop: the standby takes over at once
    taken = b.acquire()
    assert taken is not None and taken.epoch == term.epoch + 1


def test_a_stale_holder_fails_its_fencing_check_after_another_took_over(scale_pg):
    a = _lease(scale_pg, "fence", ttl_s=0.5, holder="a")
    b = _lease(scale_pg, "fence", ttl_s=5.0, holder="b")
    old = a.acquire()
    assert old is not None
    a.check(old.epoch)  # passes while a holds it
    time.sleep(0.6)  # a is paused past its lease ...
    new = b.acquire()
    assert new is not None and new.epoch == old.epoch + 1
    with pytest.raises(LeaseLost, match=r"lost: the lease is now held by b \(epoch 2\)"):
        a.check(old.epoch)  # ... and wakes up: it must not sign
    with pytest.raises(LeaseLost, match="held by b"):
        b.check(old.epoch)  # an old epoch is stale even for the current holder's id
    assert b.check(new.epoch, margin_s=1.0) > 4.0
    with pytest.raises(LeaseLost, match=r"s left, 9.00 s needed to sign"):
        b.check(new.epoch, margin_s=9.0)  # too little lease left to sign safely


def test_keeper_runs_the_submitter_loop_only_while_holding(scale_pg):
    """Two keepers: the loop starts in the holder only; when the holder's renewals stop (its
    process died), the other's loop starts after the lease expires, its fence passes and the
    old one's fails."""
    name = f"keeper-{uuid.uuid4().hex[:6]}"
    running: list[tuple[str, float, float]] = []
    terms: list[tuple[str, int]] = []
    keepers = {
        who: LeaseKeeper(
            _lease(scale_pg, name, ttl_s=2.0, holder=who),
            renew_s=0.3,
            on_term=lambda epoch, who=who: terms.append((who, epoch)),
        )
        for who in ("x", "y")
    }
    stops = {who: threading.Event() for who in keepers}
    loop_stop = threading.Event()

    def loop_for(who: str):
        def loop(term_stop: threading.Event) -> None:
            start = time.monotonic()
            keepers[who].fence()  # the holder may sign
            term_stop.wait(30)
            running.append((who, start, time.monotonic()))

        return loop

    threads = []
    for who, keeper in keepers.items():
        threads.append(threading.Thread(target=keeper.run, args=(stops[who],), daemon=True))
        threads.append(
            threading.Thread(
                target=keeper.run_submitter, args=(loop_stop, loop_for(who)), daemon=True
            )
        )
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not any(k.holding for k in keepers.values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.6)
    (first,) = [w for w, k in keepers.items() if k.holding]
    (second,) = [w for w in keepers if w != first]
    assert not keepers[second].holding
    with pytest.raises(LeaseLost, match="not the active submitter"):
        keepers[second].fence()
    # the holder "dies": its renewals stop (no release), its loop is left running
    dead = keepers[first]
    dead.renew_s = 3600.0
    original_step = dead.step
    dead.step = lambda: None  # type: ignore[method-assign]
    killed_at = time.monotonic()
    while not keepers[second].holding:
        assert time.monotonic() - killed_at < 6, "the standby did not take over"
        time.sleep(0.02)
    took = time.monotonic() - killed_at
    assert took < 2.0 + 0.3 + 1.5, took  # ttl + one renew period (+ scheduling)
    with pytest.raises(LeaseLost):
        dead.fence()  # the old holder wakes up: fenced off, and its term ends
    assert not dead.holding
    loop_stop.set()
    for who in keepers:
        stops[who].set()
    dead.step = original_step  # type: ignore[method-assign]
    for t in threads:
        t.join(5)
    assert [w for w, _ in terms] == [first, second]
    assert [e for _, e in terms] == [terms[0][1], terms[0][1] + 1]
    by_who = {w: (s, e) for w, s, e in running}
    assert set(by_who) == {first, second}
    # the dead holder's loop was never told to stop (it is "dead"), but it was fenced off above
    assert by_who[first][0] < by_who[second][0]
    with psycopg.connect(scale_pg.dsn) as conn:
        (left,) = conn.execute(
            f"SELECT extract(epoch FROM expires_at - now()) FROM {TABLE} WHERE name = %s", (name,)
        ).fetchone()
    assert left <= 0  # released by the clean stop


def test_an_unreachable_database_is_one_line_and_never_the_password():
    lease = SubmitterLease(
        f"host=127.0.0.1 port={free_port()} user=relay password=hunter2secret dbname=x",
        ttl_s=1.0,
        connect_timeout_s=1,
    )
    with pytest.raises(LeaseUnavailable) as info:
        lease.acquire()
    message = str(info.value)
    assert message.startswith("submitter lease unavailable: OperationalError: ")
    assert "\n" not in message and "hunter2secret" not in message
    keeper = LeaseKeeper(lease, renew_s=0.2)
    assert keeper.step() is None and not keeper.holding
    assert keeper.last_error is not None and "hunter2secret" not in keeper.last_error


def test_lease_timing_settings_are_checked_in_one_line():
    common = {
        "rpc_urls": ["http://127.0.0.1:8545"],
        "settlement": "0x" + "11" * 20,
        "hospital_key": {"keystore": "/nonexistent/h.json"},
        "submitter_key": {"keystore": "/nonexistent/s.json"},
        "nullifier_secret": "11" * 32,
    }
    settings = load_settings(**common)
    assert (settings.submitter_lease_ttl_s, settings.submitter_lease_renew_s) == (3.0, 1.0)
    with pytest.raises(RelayConfigError) as info:
        load_settings(**common, submitter_lease_ttl_s=2, submitter_lease_renew_s=1.5)
    assert info.value.problems == [
        "settings: Value error, submitter_lease_renew_s (1.5) must be at most half of "
        "submitter_lease_ttl_s (2)"
    ]
    with pytest.raises(RelayConfigError) as info:
        load_settings(**common, submitter_lease_ttl_s=0.1)
    assert info.value.problems == [
        "submitter_lease_ttl_s (env ZKCARE_RELAY_SUBMITTER_LEASE_TTL_S): Input should be greater "
        "than or equal to 0.5"
    ]
