"""The submitter's nonces: one manager, reconciled with the chain at start and after errors.

The job store records every nonce ever signed (``attempts``); the chain knows which were used,
by us or by anyone else holding the key. The next nonce is ``max(highest signed + 1, pending
count on the chain)``: never a nonce that was signed before (no reuse, so no accidental
replacement of a job by another) and never beyond what the chain needs (no gap, as long as the
submitter signs a new nonce only after the previous one was accepted by a node — it does).
"""

from __future__ import annotations

import logging
import threading

from prover.relay.store import JobStore

log = logging.getLogger("zkcare.relay.nonces")


class NonceManager:
    """Hands out nonces for one address."""

    def __init__(self, store: JobStore, address: str) -> None:
        self.store = store
        self.address = address
        self._next: int | None = None
        self._lock = threading.Lock()

    @property
    def synced(self) -> bool:
        """Whether the manager was reconciled since the last invalidation."""
        return self._next is not None

    def sync(self, chain_pending: int) -> int:
        """Reconcile with the chain's pending transaction count; the next nonce."""
        stored = self.store.max_nonce()
        local = 0 if stored is None else stored + 1
        with self._lock:
            if chain_pending > local:
                log.warning(
                    "chain has %d transactions from %s, store only %d: "
                    "another sender uses this key",
                    chain_pending,
                    self.address,
                    local,
                )
            self._next = max(local, chain_pending)
            return self._next

    def peek(self) -> int:
        """The nonce the next transaction gets (call :meth:`sync` first)."""
        with self._lock:
            if self._next is None:
                raise RuntimeError("nonce manager is not synced with the chain")
            return self._next

    def consume(self, nonce: int) -> None:
        """Mark ``nonce`` as signed and persisted."""
        with self._lock:
            if nonce != self._next:
                raise RuntimeError(f"nonce {nonce} consumed out of order (next is {self._next})")
            self._next = nonce + 1

    def external(self, nonce: int) -> None:
        """Another part of this relay (research-bounty evaluations) signed ``nonce`` with this
        key and a node accepted it: the next transaction gets a later one."""
        with self._lock:
            if self._next is not None and self._next <= nonce:
                self._next = nonce + 1

    def invalidate(self) -> None:
        """Forget the local view; the next signing resyncs with the chain first."""
        with self._lock:
            self._next = None
