"""Exactly one active submitter among relays that share one PostgreSQL store: a lease row.

Every relay instance runs a :class:`LeaseKeeper`: every ``renew_s`` it tries to acquire (or, as
the holder, renew) the row ``zkcare_submitter_lease[name]`` in one ``INSERT … ON CONFLICT DO
UPDATE … WHERE`` statement, which PostgreSQL runs under the row's lock, so of any number of
contenders at most one holds the lease at a time. ``expires_at`` is the database's clock plus
``ttl_s`` (no host clock is trusted); the lease passes to another instance only after it expired.
Each new holder (and a holder whose own lease ran out before it renewed) gets the next
``epoch``, the fencing token.

The holder runs the submitter loop (:meth:`LeaseKeeper.run_submitter`); on each new term the
submitter reconciles first (nonces from the chain and the shared store; every in-flight
transaction re-broadcast). Before it signs a new nonce the submitter calls :meth:`LeaseKeeper.
fence`: the row must still carry this holder and this epoch and have at least ``margin_s`` left.
So a holder paused past its lease (GC, SIGSTOP, a partition) that wakes up finds another epoch
and stops instead of signing with a nonce the new holder also uses. The check and the store's
write are two statements, so the margin (the lease time that must be left at the check) bounds
the window in which a holder paused *between* them could still persist a transaction.

Who may use it: whoever can write to the relays' database (its DSN is a secret of the relays);
the provers' engine role needs no access to this table.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prover.exceptions import LeaseLost, LeaseUnavailable

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("zkcare.relay.lease")
TABLE = "zkcare_submitter_lease"
#: The lease that makes one relay the submitter of a shared store.
SUBMITTER_LEASE = "submitter"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    name text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
)
"""

_ACQUIRE = f"""
INSERT INTO {TABLE} AS l (name, holder, epoch, acquired_at, renewed_at, expires_at)
VALUES (%(name)s, %(holder)s, 1, now(), now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = %(epoch)s AND l.expires_at > now()
                 THEN l.epoch ELSE l.epoch + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = %(epoch)s
                            AND l.expires_at > now()
                       THEN l.acquired_at ELSE now() END,
    renewed_at = now(),
    expires_at = EXCLUDED.expires_at
WHERE (l.holder = EXCLUDED.holder AND l.epoch = %(epoch)s) OR l.expires_at <= now()
RETURNING l.epoch, extract(epoch FROM l.expires_at - now())::float8
"""

_CHECK = f"""
SELECT holder, epoch, extract(epoch FROM expires_at - now())::float8 FROM {TABLE}
WHERE name = %(name)s
"""

_RELEASE = f"""
UPDATE {TABLE} SET expires_at = now() WHERE name = %(name)s AND holder = %(holder)s
AND epoch = %(epoch)s
"""


def new_holder_id() -> str:
    """A holder id unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Term:
    """One holder's tenure: its fencing epoch and the lease time left when last renewed."""

    epoch: int
    remaining_s: float


@dataclass(frozen=True)
class LeaseRow:
    """The lease as the database has it now."""

    holder: str
    epoch: int
    remaining_s: float


class SubmitterLease:
    """The lease row's statements on one autocommit psycopg connection (thread-safe)."""

    def __init__(
        self,
        dsn: str,
        *,
        ttl_s: float,
        holder: str | None = None,
        name: str = SUBMITTER_LEASE,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.ttl_s = ttl_s
        self.holder = holder or new_holder_id()
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement (reconnecting once after a broken connection)."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(
                            self.dsn,
                            autocommit=True,
                            connect_timeout=max(1, round(self.connect_timeout_s)),
                        )
                    cur = self._conn.execute(sql, params)
                    return list(cur.fetchall()) if cur.description is not None else []
                except psycopg.OperationalError as exc:
                    self._drop()
                    if attempt == 2:
                        raise LeaseUnavailable(_pg_reason(exc)) from None
                except psycopg.Error as exc:
                    raise LeaseUnavailable(_pg_reason(exc)) from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close
                pass
            self._conn = None

    def ensure_schema(self) -> None:
        """Create the lease table (idempotent; concurrent relays serialize on a lock)."""
        self._execute(
            f"DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('{TABLE}')); "
            f"EXECUTE $s${SCHEMA}$s$; END $$",
            {},
        )

    def acquire(self, epoch: int | None = None) -> Term | None:
        """Acquire the lease, or renew it when this holder holds ``epoch``; the term, or None
        while another holder's lease runs."""
        rows = self._execute(
            _ACQUIRE,
            {"name": self.name, "holder": self.holder, "ttl": self.ttl_s, "epoch": epoch or -1},
        )
        if not rows:
            return None
        return Term(int(rows[0][0]), float(rows[0][1]))

    def current(self) -> LeaseRow | None:
        """The lease row (None before anyone acquired it)."""
        rows = self._execute(_CHECK, {"name": self.name})
        if not rows:
            return None
        return LeaseRow(str(rows[0][0]), int(rows[0][1]), float(rows[0][2]))

    def check(self, epoch: int, margin_s: float = 0.0) -> float:
        """The fencing check: this holder still holds ``epoch`` with at least ``margin_s`` left
        (the seconds left), else :class:`LeaseLost`."""
        row = self.current()
        if row is None or row.holder != self.holder or row.epoch != epoch:
            who = "nobody" if row is None else f"{row.holder} (epoch {row.epoch})"
            raise LeaseLost(self.holder, epoch, f"the lease is now held by {who}")
        if row.remaining_s < margin_s:
            raise LeaseLost(
                self.holder,
                epoch,
                f"{max(row.remaining_s, 0.0):.2f} s left, {margin_s:.2f} s needed to sign",
            )
        return row.remaining_s

    def release(self, epoch: int) -> bool:
        """Let the lease expire now (a clean shutdown: a standby takes over at once)."""
        self._execute(_RELEASE, {"name": self.name, "holder": self.holder, "epoch": epoch})
        return True

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()


class LeaseKeeper:
    """Holds (or waits for) the submitter lease and runs the submitter only while holding it."""

    def __init__(
        self,
        lease: SubmitterLease,
        *,
        renew_s: float,
        on_term: Callable[[int], None] | None = None,
    ) -> None:
        """``on_term(epoch)``: called when this instance becomes the holder (a new epoch)."""
        self.lease = lease
        self.renew_s = renew_s
        #: Lease time that must be left for the fencing check to pass.
        self.margin_s = min(renew_s, lease.ttl_s / 3)
        self.on_term = on_term
        self.epoch: int | None = None
        self._last_epoch: int | None = None  # renewable after a blip, if nobody took over
        self.terms = 0
        self.last_error: str | None = None
        self._announced_standby = False  # "standby" is logged once per stretch as one
        self._deadline = 0.0  # monotonic: the current term's lease ends by then at the latest
        self._term_stop = threading.Event()
        self._term_stop.set()
        self._changed = threading.Condition()

    @property
    def holding(self) -> bool:
        """Whether this instance is the active submitter now (by its last renewal)."""
        return self.epoch is not None and time.monotonic() < self._deadline

    def step(self) -> Term | None:
        """One acquire-or-renew; starts or ends the term as the database says."""
        started = time.monotonic()
        try:
            term = self.lease.acquire(self.epoch if self.epoch is not None else self._last_epoch)
        except LeaseUnavailable as exc:
            if self.last_error is None:
                log.warning("%s; not submitting until the lease is renewed", exc)
            self.last_error = str(exc)[:300]
            self._end_term("the lease could not be renewed")
            return None
        self.last_error = None
        if term is None:
            if not self._announced_standby:
                log.info("standby: another relay holds the submitter lease")
                self._announced_standby = True
            self._end_term("another relay holds the lease")
            return None
        self._announced_standby = False
        if term.epoch != self.epoch:
            self._end_term(f"a new term (epoch {term.epoch}) begins")
            self._begin_term(term, started)
        else:
            self._deadline = started + term.remaining_s
        return term

    def _begin_term(self, term: Term, started: float) -> None:
        with self._changed:
            self.epoch = self._last_epoch = term.epoch
            self._deadline = started + term.remaining_s
            self.terms += 1
            self._term_stop = threading.Event()
            self._changed.notify_all()
        log.info("active submitter: holder %s, epoch %d", self.lease.holder, term.epoch)
        if self.on_term is not None:
            self.on_term(term.epoch)

    def _end_term(self, why: str) -> None:
        with self._changed:
            if self.epoch is not None:
                log.warning("standing down as submitter (epoch %d): %s", self.epoch, why)
            self.epoch = None
            self._deadline = 0.0
            self._term_stop.set()
            self._changed.notify_all()

    def fence(self) -> None:
        """The submitter's check before signing a new nonce (:class:`LeaseLost` otherwise)."""
        epoch = self.epoch
        if epoch is None or time.monotonic() >= self._deadline:
            self._end_term("the lease ran out before it was renewed")
            raise LeaseLost(self.lease.holder, epoch or 0, "not the active submitter")
        try:
            self.lease.check(epoch, self.margin_s)
        except (LeaseLost, LeaseUnavailable) as exc:
            self._end_term(str(exc))
            if isinstance(exc, LeaseLost):
                raise
            raise LeaseLost(self.lease.holder, epoch, exc.detail) from None

    def run(self, stop: threading.Event) -> None:
        """Acquire or renew every ``renew_s`` until ``stop``; then release the lease."""
        while not stop.is_set():
            self.step()
            stop.wait(self.renew_s)
        epoch = self.epoch
        self._end_term("the relay stops")
        if epoch is not None:
            try:
                self.lease.release(epoch)
                log.info("submitter lease released (epoch %d)", epoch)
            except LeaseUnavailable as exc:
                log.warning("could not release the lease: %s", exc)
        self.lease.close()

    def wait_term(self, stop: threading.Event) -> threading.Event | None:
        """Block until this instance holds the lease; the event that ends the term (None once
        ``stop`` is set)."""
        with self._changed:
            while not stop.is_set():
                if self.epoch is not None and not self._term_stop.is_set():
                    return self._term_stop
                self._changed.wait(0.2)
        return None

    def run_submitter(self, stop: threading.Event, loop: Callable[[threading.Event], None]) -> None:
        """Run ``loop(term_stop)`` (the submitter's loop) during each term, until ``stop``."""
        while not stop.is_set():
            term_stop = self.wait_term(stop)
            if term_stop is None:
                return
            loop(term_stop)

    def stop_term(self) -> None:
        """End the current term now (the relay stops)."""
        self._end_term("the relay stops")


def _pg_reason(exc: BaseException) -> str:
    """One line about a database error (never the DSN: it may hold a password)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
