"""The claim job state machine: states, allowed transitions, final states.

::

    queued ─► proving ─► proved ─► signed ─► submitted ─► confirmed ─► paid | denied
      ▲          │         │ ▲        │          │ ▲  ▲        │
      └──────────┘         │ └────────┴──────────┘ │  └────────┘ (receipt lost to a reorg)
    (worker lost/restart)  │   (nonce taken by a   │
                           │    foreign transaction)
    any non-final state ─► failed (with a reason: invalid input, simulated revert, …)

    held ─► queued | failed
    (accepted while the chain could not be asked about its policy: checked before proving)

``held`` is a job accepted while its policy could not be checked (the chain unreachable within
the request's one-second budget): it is not proved until the policy is checked, then goes to
``queued``, or to ``failed`` with the reason the chain gives.

``signed`` means the signed transaction (raw bytes, hash, nonce) is persisted and may or may not
have reached a node; ``submitted`` means a node accepted it. Every transition is one SQL
transaction with a compare-and-set on the current state (see :mod:`prover.relay.store`).
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a claim job is."""

    HELD = "held"
    QUEUED = "queued"
    PROVING = "proving"
    PROVED = "proved"
    SIGNED = "signed"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    PAID = "paid"
    DENIED = "denied"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """True for paid, denied and failed: nothing happens to the job any more."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.PAID, JobState.DENIED, JobState.FAILED})

#: Allowed transitions (from -> to). Anything else is a bug and is refused by the store.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # queued once the policy is checked; failed when the chain rejects it
    JobState.HELD: frozenset({JobState.QUEUED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.PROVING, JobState.FAILED}),
    # back to queued when the worker died or the relay restarted mid-proof
    JobState.PROVING: frozenset({JobState.PROVED, JobState.QUEUED, JobState.FAILED}),
    # failed: the simulated transaction reverted (final, not retried); confirmed: a released
    # job's earlier transaction turned out to be mined after all
    JobState.PROVED: frozenset({JobState.SIGNED, JobState.FAILED, JobState.CONFIRMED}),
    # proved: the nonce was consumed by a transaction that is not ours (re-sign, new nonce);
    # confirmed: after a crash the persisted transaction turns out to be mined already
    JobState.SIGNED: frozenset({JobState.SUBMITTED, JobState.CONFIRMED, JobState.PROVED}),
    JobState.SUBMITTED: frozenset({JobState.CONFIRMED, JobState.PROVED}),
    # submitted: the receipt disappeared (reorg); failed: mined but reverted; proved: a batch
    # mined but reverted as a whole (nothing recorded), its other claims are sent again
    JobState.CONFIRMED: frozenset(
        {JobState.PAID, JobState.DENIED, JobState.FAILED, JobState.SUBMITTED, JobState.PROVED}
    ),
    JobState.PAID: frozenset(),
    JobState.DENIED: frozenset(),
    JobState.FAILED: frozenset(),
}

#: States whose job holds a nonce that a node may know about.
IN_FLIGHT_STATES = frozenset({JobState.SIGNED, JobState.SUBMITTED, JobState.CONFIRMED})


def allowed(from_state: JobState, to_state: JobState) -> bool:
    """Whether ``from_state -> to_state`` is a transition of the machine."""
    return to_state in TRANSITIONS[from_state]
