"""Test-only crash points: ``ZKCARE_RELAY_CRASH_AT=after_sign:3,proved:2`` SIGKILLs the relay.

Each named point counts how often the relay passed it; when a count reaches its configured
value the process kills itself with SIGKILL (no cleanup, no flushing beyond the log line), which
is how the crash-recovery tests stop it "between" two steps. Unset (production), every call is a
dictionary lookup.

Points: ``proved`` (a proof came back, before it is stored), ``after_sign`` (signed
transaction persisted, before broadcast), ``after_broadcast`` (node accepted it, before the job
is marked submitted), ``after_submit`` (marked submitted, before any receipt), ``after_replace``
(replacement persisted, before broadcast), ``before_final`` (receipt confirmed, before the job
is marked paid/denied). The batched path (:mod:`prover.relay.batching`) has its own:
``batch_after_sign`` (one transaction for N jobs persisted, before broadcast),
``batch_after_broadcast`` (node accepted it, the jobs still ``signed``), ``batch_after_replace``
and ``batch_before_final`` (receipt confirmed, no job of the batch marked paid/denied yet).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

ENV = "ZKCARE_RELAY_CRASH_AT"
POINTS = frozenset(
    {
        "proved",
        "after_sign",
        "after_broadcast",
        "after_submit",
        "after_replace",
        "before_final",
        "batch_after_sign",
        "batch_after_broadcast",
        "batch_after_replace",
        "batch_before_final",
    }
)
log = logging.getLogger("zkcare.relay.crash")


def _parse(spec: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown crash point {name!r}; known: {sorted(POINTS)}")
        out[name] = int(count or 1)
    return out


_TARGETS = _parse(os.environ.get(ENV, ""))
_COUNTS: dict[str, int] = {}
_LOCK = threading.Lock()


def point(name: str) -> None:
    """Pass crash point ``name``; SIGKILL this process if it is armed and due."""
    if not _TARGETS:
        return
    with _LOCK:
        _COUNTS[name] = _COUNTS.get(name, 0) + 1
        due = _TARGETS.get(name) == _COUNTS[name]
    if due:
        log.warning("crash point %s reached (%d): SIGKILL", name, _COUNTS[name])
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
