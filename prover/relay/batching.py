"""Batched claims: many proved jobs settled by one ``submitClaimsBatched`` transaction.

Used by :class:`prover.relay.submitter.Submitter` when ``batch_max_size`` > 1. Each pass:

- **Gathers** proved jobs by the model version of their policy's product (read once per policy,
  cached); a version is batched only when the registry has a batch verifier for it
  (``getBatchVerifier``, read once per version, cached); others go singly as before. A batch holds
  at most ``batch_max_size`` jobs on distinct policies, oldest first, and is sent when full or
  when its oldest job has waited ``batch_max_wait_s`` since it was proved; a lone job goes singly.
- **Simulates** the batch with ``eth_call``. On a revert the bad claim is **isolated**: the
  decoded error names it (``ModelRegistryBatchRejected`` with an index, or an error naming a
  policy of the batch), else the smallest failing prefix is found by bisection. A claim refused
  for itself (policy, attestation, nullifiers…) fails with that decoded reason; a claim whose
  proof the batch verifier refused (also ``index = 2²⁵⁶−1``: only the combined pairing failed) is
  sent alone, where the single verifier's simulation decides it (a bad proof fails with
  ``ModelRegistryProofRejected``). The others are simulated again as a smaller batch.
- **Signs one transaction for N jobs** (one nonce) and persists it, every job ``signed`` with the
  same nonce and hash, the attempt row (keyed by the batch's first job) and the
  ``attempt_jobs`` rows linking it to each job and its slot in ``Claim[]``, all in one SQL
  transaction; then broadcasts. Every later transition of a batch (submitted, replaced at the same
  nonce with bumped fees, confirmed, back to submitted after a reorg, final) is one SQL
  transaction for all its jobs, so a crash leaves the batch in one state.
- **Finalizes each job from its own event**: the receipt's ``ClaimPaid``/``ClaimDenied`` events
  come in claim order, one per slot, and each must name the job's policy. A batch that reverted
  on-chain (all or none: nothing was recorded) sends its jobs back to ``proved``: the one the
  decoded error names fails, the rest are batched again (or, when no claim is named, sent alone).

Exactly once holds as for single claims: a job has at most one nonce at a time, all attempts of a
batch carry the same claims at the same nonce, and the contract refuses a spent nullifier.
The SQL here is portable (the store's :meth:`~prover.relay.store.JobStore._tx` helper only).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3.types import TxReceipt

from prover.exceptions import InvalidTransition
from prover.relay import crash
from prover.relay.chain import (
    Broadcast,
    DecodedError,
    SimulationReverted,
    get_receipt,
    is_known,
    send_raw,
)
from prover.relay.states import JobState, allowed
from prover.relay.store import Attempt, Job, JobStore, insert_attempt

if TYPE_CHECKING:
    from prover.relay.submitter import Submitter

log = logging.getLogger("zkcare.relay.batching")
#: ``ModelRegistryBatchRejected``'s index when only the combined pairing failed.
NO_INDEX = 2**256 - 1
#: Errors that mean "this proof, per the batch verifier": decided again by the single verifier.
_PROOF_ERRORS = frozenset({"ModelRegistryBatchRejected", "ClaimSettlementBatchMixedModels"})
#: Columns stored as decimal text (as the store does).
_INT_TEXT = frozenset({"claim_id", "amount"})


@dataclass(frozen=True)
class Change:
    """One job's transition inside a batch's SQL transaction."""

    job: Job
    to: JobState
    fields: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Culprit:
    """The claim a reverted batch was isolated to."""

    index: int
    reason: str
    #: Send it alone (the single verifier decides) instead of failing it.
    alone: bool


class Batcher:
    """The submitter's batched path (it signs with the submitter's key and nonces)."""

    def __init__(self, submitter: Submitter) -> None:
        self.sub = submitter
        self.store = submitter.store
        self._verifiers: dict[tuple[bytes, int], bool] = {}
        #: Jobs of a batch that reverted on-chain without naming a claim: they go alone.
        self._alone: set[str] = set()

    # ------------------------------------------------------------------ store (portable SQL)

    def batched(self, jobs: Sequence[Job]) -> set[str]:
        """The ids of ``jobs`` whose current transaction is a batch's."""
        current = {(j.id, j.tx_hash) for j in jobs if j.tx_hash is not None}
        if not current:
            return set()
        ids = sorted({job_id for job_id, _ in current})
        marks = ",".join("?" * len(ids))
        with self.store._tx() as conn:
            rows = conn.execute(
                f"SELECT job_id, tx_hash FROM attempt_jobs WHERE job_id IN ({marks})", ids
            ).fetchall()
        return {r[0] for r in rows if (r[0], r[1]) in current}

    def attempts(self, job: Job, *, any_nonce: bool = False) -> list[Attempt]:
        """The batch transactions covering ``job`` (at its nonce unless ``any_nonce``), oldest
        first."""
        sql = (
            "SELECT a.tx_hash, a.job_id, a.nonce, a.raw_tx, a.max_fee, a.priority_fee,"
            " a.gas_limit, a.created_at FROM attempts a JOIN attempt_jobs m"
            " ON m.tx_hash = a.tx_hash WHERE m.job_id = ?"
        )
        args: list[Any] = [job.id]
        if not any_nonce:
            sql += " AND a.nonce = ?"
            args.append(job.nonce)
        with self.store._tx() as conn:
            rows = conn.execute(sql + " ORDER BY a.created_at, a.tx_hash", args).fetchall()
        return [Attempt(*tuple(r)) for r in rows]

    def slots(self, tx_hash: str) -> dict[str, int]:
        """``job id -> slot`` in the ``Claim[]`` of the batch transaction ``tx_hash``."""
        with self.store._tx() as conn:
            rows = conn.execute(
                "SELECT job_id, slot FROM attempt_jobs WHERE tx_hash = ?", (tx_hash,)
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def apply(
        self,
        changes: Sequence[Change],
        attempt: Attempt | None = None,
        members: Sequence[str] = (),
    ) -> list[Job]:
        """All ``changes`` (compare-and-set on each job's state, a ``transitions`` row each) and
        the new ``attempt`` linked to ``members`` (in slot order), in one SQL transaction; the
        jobs as stored after. :class:`InvalidTransition` (nothing changed) if any job moved."""
        now = time.time()
        with self.store._tx() as conn:
            if attempt is not None:
                insert_attempt(conn, attempt)
                for slot, job_id in enumerate(members):
                    conn.execute(
                        "INSERT INTO attempt_jobs (tx_hash, job_id, slot) VALUES (?, ?, ?)",
                        (attempt.tx_hash, job_id, slot),
                    )
            for change in changes:
                job, to = change.job, change.to
                if job.state != to and not allowed(job.state, to):
                    raise InvalidTransition(job.id, job.state, to, job.state)
                values: dict[str, Any] = {
                    name: (str(int(v)) if name in _INT_TEXT and v is not None else v)
                    for name, v in change.fields.items()
                }
                values["state"] = to.value
                values["updated_at"] = now
                if change.reason is not None:
                    values["reason"] = change.reason
                if to.final:
                    values["final_at"] = now
                assignments = ", ".join(f"{name} = ?" for name in values)
                cur = conn.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?",
                    (*values.values(), job.id, job.state.value),
                )
                if cur.rowcount != 1:
                    raise InvalidTransition(job.id, job.state, to, None)
                detail = change.detail or change.reason
                if job.state != to or detail is not None:
                    JobStore._log(conn, job.id, job.state, to, now, detail)
        return [self.store.get(change.job.id) for change in changes]

    # ------------------------------------------------------------------ submitting

    def has_batch_verifier(self, key: tuple[bytes, int]) -> bool:
        """Whether the registry has a batch verifier for ``(modelId, version)`` (cached)."""
        known = self._verifiers.get(key)
        if known is None:
            known = self.sub.settlement.batch_verifier(*key) is not None
            self._verifiers[key] = known
            log.info(
                "model 0x%s version %d: %s",
                key[0].hex()[:12],
                key[1],
                "batch verifier registered; claims are batched" if known else "no batch verifier",
            )
        return known

    def submit(self, jobs: Sequence[Job], now: int) -> list[Job] | None:
        """Send the due batches among proved ``jobs`` (``now``: the head's timestamp); the jobs
        to send singly, or None when this pass must stop (paused, or a broadcast failed)."""
        sub = self.sub
        size, wait = sub.config.batch_max_size, sub.config.batch_max_wait_s
        singles: list[Job] = []
        groups: dict[tuple[bytes, int], list[Job]] = {}
        for job in self._unsettled(jobs):
            key = sub.settlement.model_of(job.policy_id)
            if job.id in self._alone or key is None or not self.has_batch_verifier(key):
                self._alone.discard(job.id)
                singles.append(job)
            else:
                groups.setdefault(key, []).append(job)
        wall = time.time()
        for group in groups.values():
            while group:
                batch: list[Job] = []
                for job in group:  # oldest first, one job per policy
                    if len(batch) < size and all(b.policy_id != job.policy_id for b in batch):
                        batch.append(job)
                oldest = min(j.proved_at or j.updated_at for j in batch)
                if len(batch) < size and wall - oldest < wait:
                    break  # wait for companions
                taken = {j.id for j in batch}
                group = [j for j in group if j.id not in taken]
                sent, alone = self._send(batch, now)
                singles += alone
                if not sent:
                    return None
        return singles

    def _unsettled(self, jobs: Sequence[Job]) -> list[Job]:
        """``jobs`` less those a released batch transaction turns out to have settled (those are
        confirmed here and tracked as the batch from the next pass)."""
        ids = [j.id for j in jobs]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self.store._tx() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT job_id FROM attempt_jobs WHERE job_id IN ({marks})", ids
            ).fetchall()
        released = {r[0] for r in rows}
        out = []
        for job in jobs:
            found = None
            if job.id in released:
                found = self.sub._find_receipt(self.attempts(job, any_nonce=True))
            if found is None or int(found[1]["status"]) != 1:
                out.append(job)
                continue
            attempt, receipt = found
            self.apply([self._confirmed(job, attempt, receipt)])
        return out

    def _send(self, batch: list[Job], now: int) -> tuple[bool, list[Job]]:
        """Simulate, isolate, sign, persist and broadcast one batch: ``(go on, jobs to send
        singly)``."""
        sub = self.sub
        pending = [sub.attested(job, now) for job in batch]
        singles: list[Job] = []
        while len(pending) >= 2:
            claims = [claim for _, claim in pending]
            data = sub.settlement.encode_submit_batched(claims)
            try:
                claim_ids = sub.settlement.simulate_batched(sub.account.address, data)
            except SimulationReverted as exc:
                if exc.error is not None and exc.error.name == "ModelRegistryNoBatchVerifier":
                    log.warning("batch refused (%s); sending its claims singly", exc.reason)
                    self._verifiers.clear()
                    return True, singles + [job for job, _ in pending]
                culprit = self._isolate([claim for _, claim in pending], exc)
                if culprit is None:
                    log.info("batch of %d: revert not reproducible; next pass", len(pending))
                    return True, singles
                job = pending.pop(culprit.index)[0]
                where = f"claim {culprit.index} of a batch of {len(pending) + 1}"
                if culprit.alone:
                    log.info("job %s: %s (%s); sending it alone", job.id, culprit.reason, where)
                    singles.append(job)
                else:
                    log.warning(
                        "job %s: %s (%s); failing it (final)", job.id, culprit.reason, where
                    )
                    sub.store.transition(
                        job.id,
                        JobState.PROVED,
                        JobState.FAILED,
                        reason=f"simulation reverted: {culprit.reason}",
                        detail=where,
                    )
                continue
            return self._sign_and_send([job for job, _ in pending], data, claim_ids), singles
        return True, singles + [job for job, _ in pending]

    def _isolate(self, claims: list[tuple[object, ...]], exc: SimulationReverted) -> Culprit | None:
        """The claim the batch ``claims`` reverted for (``exc``): named by the error, else the
        last of the smallest failing prefix (bisection); None if the batch no longer reverts."""
        n = len(claims)
        error = exc.error
        if error is not None:
            index = error.args.get("index")
            if error.name in _PROOF_ERRORS and isinstance(index, int) and index < n:
                return Culprit(index, exc.reason, True)
            policy = error.args.get("policyId")
            hits = [i for i, c in enumerate(claims) if c[0] == policy]
            if policy is not None and len(hits) == 1:
                return Culprit(hits[0], exc.reason, False)
        sub = self.sub
        lo, hi, why = 1, n, exc
        seen = False
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                data = sub.settlement.encode_submit_batched(claims[:mid])
                sub.settlement.simulate_batched(sub.account.address, data)
            except SimulationReverted as failed:
                hi, why, seen = mid, failed, True
            else:
                lo = mid + 1
        if not seen:  # only the full batch failed: make sure it still does
            try:
                data = sub.settlement.encode_submit_batched(claims)
                sub.settlement.simulate_batched(sub.account.address, data)
            except SimulationReverted as failed:
                why = failed
            else:
                return None
        reason = why.reason
        if why.error is not None and why.error.args.get("index") == NO_INDEX:
            reason = f"{why.error.name}(index=2^256-1): only the combined pairing failed"
        return Culprit(hi - 1, f"{reason}; isolated by bisection", _names_proof(why.error))

    def _sign_and_send(self, jobs: list[Job], data: bytes, claim_ids: list[int]) -> bool:
        """Sign one transaction for the simulated batch ``jobs``, persist it with every job
        ``signed``, broadcast; False stops this pass."""
        sub = self.sub
        gas = math.ceil(sub._gas_used(data) * sub.config.gas_limit_multiplier)
        attempt = sub.sign_next(data, gas, jobs[0].id, f"a batch of {len(jobs)} claims")
        if attempt is None:
            return False
        nonce = attempt.nonce
        n = len(jobs)
        changes = [
            Change(
                job,
                JobState.SIGNED,
                {
                    "nonce": nonce,
                    "tx_hash": attempt.tx_hash,
                    "attestation_expiry": job.attestation_expiry,
                    "signature": job.signature,
                },
                detail=f"nonce {nonce}, {attempt.tx_hash} (batch of {n}, slot {slot})",
            )
            for slot, job in enumerate(jobs)
        ]
        try:
            signed = self.apply(changes, attempt, [job.id for job in jobs])
        except InvalidTransition:
            return True  # another pass took one of them; the nonce was not consumed
        sub.consumed(attempt)
        log.info(
            "batch of %d: signed nonce %d %s (simulated claims %s, gas limit %d)",
            n,
            nonce,
            attempt.tx_hash,
            claim_ids,
            gas,
        )
        crash.point("batch_after_sign")
        return self._broadcast(signed, attempt).accepted

    def _broadcast(
        self, jobs: list[Job], attempt: Attempt, *, may_replace: bool = True
    ) -> Broadcast:
        """Send a persisted batch transaction; on acceptance its jobs are (still) ``submitted``."""
        sub = self.sub
        outcome = send_raw(sub.rpc, attempt.raw_tx)
        now = time.time()
        if outcome.accepted:
            crash.point("batch_after_broadcast")
            self.apply(
                [
                    Change(
                        job,
                        JobState.SUBMITTED,
                        {"broadcast_at": now, "submitted_at": job.submitted_at or now},
                        detail=f"{attempt.tx_hash} {outcome.value}",
                    )
                    if job.state == JobState.SIGNED
                    else Change(job, job.state, {"broadcast_at": now})
                    for job in jobs
                ]
            )
            sub.paused_reason = None
            return outcome
        signed = any(job.state == JobState.SIGNED for job in jobs)
        if not signed:  # wait a full timeout before trying again
            self.apply([Change(job, job.state, {"broadcast_at": now}) for job in jobs])
        if outcome == Broadcast.NO_FUNDS:
            sub._pause(f"node rejected nonce {attempt.nonce}: insufficient funds")
        elif outcome == Broadcast.UNDERPRICED and signed and may_replace:
            self._replace(jobs, "node rejected the fees")
        elif outcome == Broadcast.NONCE_USED:
            log.info("batch nonce %d already used; checking receipts", attempt.nonce)
        else:
            log.warning("batch broadcast of %s: %s", attempt.tx_hash, outcome.value)
            if signed:
                sub.paused_reason = (
                    f"node rejects the transaction with nonce {attempt.nonce} "
                    f"({outcome.value}); later claims wait behind it"
                )
        return outcome

    def _replace(self, jobs: list[Job], why: str) -> None:
        """Re-sign the batch's last transaction at its nonce with bumped fees (or re-broadcast
        it once the cap is reached)."""
        sub = self.sub
        attempts = self.attempts(jobs[0])
        last = attempts[-1]
        fees = sub.bumped_fees(last, len(attempts))
        if fees is None:
            log.warning(
                "batch nonce %d: %s, replacement cap reached; re-broadcasting", last.nonce, why
            )
            sub.metrics.retries.labels("rebroadcast").inc()
            self._broadcast(jobs, last, may_replace=False)
            return
        max_fee, prio = fees
        data = bytes(TypedTransaction.from_bytes(HexBytes(last.raw_tx)).as_dict()["data"])
        if sub.fence is not None:
            sub.fence()
        attempt = sub._sign(
            sub._build_tx(data, last.nonce, last.gas_limit, max_fee, prio), last.job_id
        )
        slots = self.slots(last.tx_hash)
        members = sorted(slots, key=slots.__getitem__)
        detail = f"replacing {last.tx_hash} ({why}): max fee {last.max_fee} -> {max_fee} wei"
        jobs = self.apply(
            [
                Change(
                    job,
                    job.state,
                    {"tx_hash": attempt.tx_hash, "broadcast_at": time.time()},
                    detail=detail,
                )
                for job in jobs
            ],
            attempt,
            members,
        )
        sub.metrics.retries.labels("replacement").inc()
        log.info("batch nonce %d: %s; replaced with %s", attempt.nonce, why, attempt.tx_hash)
        crash.point("batch_after_replace")
        self._broadcast(jobs, attempt, may_replace=False)

    # ------------------------------------------------------------------ tracking

    def track(self, jobs: list[Job], head: int) -> None:
        """Track one batch: its in-flight ``jobs`` (one nonce, one transaction)."""
        sub = self.sub
        moving = [j for j in jobs if j.state in (JobState.SIGNED, JobState.SUBMITTED)]
        confirmed = [j for j in jobs if j.state == JobState.CONFIRMED]
        receipt: TxReceipt | None = None
        if moving:
            attempts = self.attempts(moving[0])
            found = sub._find_receipt(attempts)
            if found is not None:
                attempt, receipt = found
                confirmed += self.apply([self._confirmed(j, attempt, receipt) for j in moving])
                for job in moving:
                    sub._suspect.pop(job.id, None)
                log.info(
                    "batch of %d: %s mined in block %d (gas %d, status %d)",
                    len(moving),
                    attempt.tx_hash,
                    receipt["blockNumber"],
                    receipt["gasUsed"],
                    receipt["status"],
                )
            elif self._nonce_taken(moving, attempts):
                return
            elif any(j.state == JobState.SIGNED for j in moving):
                self._broadcast(moving, attempts[-1])
            else:
                age = time.time() - (moving[0].broadcast_at or moving[0].updated_at)
                if age >= sub.config.stuck_timeout_s:
                    self._replace(moving, f"no receipt after {age:.0f} s")
                elif sub._rebroadcast_all:
                    outcome = send_raw(sub.rpc, attempts[-1].raw_tx)
                    sub.metrics.retries.labels("rebroadcast").inc()
                    log.info("batch nonce %s: re-broadcast: %s", moving[0].nonce, outcome.value)
        if confirmed:
            self._track_confirmed(confirmed, head, receipt)

    @staticmethod
    def _confirmed(job: Job, attempt: Attempt, receipt: TxReceipt) -> Change:
        return Change(
            job,
            JobState.CONFIRMED,
            {
                "nonce": attempt.nonce,
                "tx_hash": attempt.tx_hash,
                "block_number": int(receipt["blockNumber"]),
                "block_hash": receipt["blockHash"].to_0x_hex(),
                "gas_used": int(receipt["gasUsed"]),
                "tx_status": int(receipt["status"]),
            },
            detail=f"mined in block {receipt['blockNumber']} (batch)",
        )

    def _nonce_taken(self, jobs: list[Job], attempts: list[Attempt]) -> bool:
        """As :meth:`Submitter._nonce_taken`, for a whole batch (released together)."""
        sub = self.sub
        lead = jobs[0]
        assert lead.nonce is not None
        if sub._nonce_mined() <= lead.nonce:
            sub._suspect.pop(lead.id, None)
            return False
        if any(is_known(sub.rpc, a.tx_hash) for a in attempts):
            return True
        first = sub._suspect.setdefault(lead.id, time.monotonic())
        if time.monotonic() - first >= sub.foreign_nonce_grace_s:
            sub._suspect.pop(lead.id, None)
            log.warning("batch nonce %d was used by another transaction; re-signing", lead.nonce)
            sub.metrics.retries.labels("foreign_nonce").inc()
            self.apply(
                [
                    Change(
                        job,
                        JobState.PROVED,
                        {"nonce": None, "tx_hash": None, "broadcast_at": None},
                        detail=f"nonce {lead.nonce} used by another transaction",
                    )
                    for job in jobs
                ]
            )
            sub.nonces.invalidate()
            sub._needs_reconcile = True
        return True

    def _track_confirmed(self, jobs: list[Job], head: int, receipt: TxReceipt | None) -> None:
        sub = self.sub
        lead = jobs[0]
        assert lead.tx_hash is not None and lead.block_number is not None
        receipt = receipt or get_receipt(sub.rpc, lead.tx_hash)
        if receipt is None:
            self._reorged(jobs)
            return
        if receipt["blockHash"].to_0x_hex() != lead.block_hash:
            self.apply(
                [
                    Change(
                        job,
                        JobState.CONFIRMED,
                        {
                            "block_number": int(receipt["blockNumber"]),
                            "block_hash": receipt["blockHash"].to_0x_hex(),
                            "gas_used": int(receipt["gasUsed"]),
                            "tx_status": int(receipt["status"]),
                        },
                        detail="re-mined in another block after a reorg",
                    )
                    for job in jobs
                ]
            )
            return
        if head - lead.block_number + 1 < sub.config.confirmations:
            return
        self._finalize(jobs, receipt, head)

    def _reorged(self, jobs: list[Job]) -> None:
        sub = self.sub
        lead = jobs[0]
        log.warning("batch %s: receipt vanished (reorg); back to submitted", lead.tx_hash)
        sub.metrics.retries.labels("reorg").inc()
        self.apply(
            [
                Change(
                    job,
                    JobState.SUBMITTED,
                    {
                        "block_number": None,
                        "block_hash": None,
                        "gas_used": None,
                        "tx_status": None,
                        "broadcast_at": time.time(),
                    },
                    detail=f"receipt of {lead.tx_hash} lost to a reorg",
                )
                for job in jobs
            ]
        )
        for attempt in self.attempts(lead):
            if attempt.tx_hash == lead.tx_hash:
                send_raw(sub.rpc, attempt.raw_tx)

    def _finalize(self, jobs: list[Job], receipt: TxReceipt, head: int) -> None:
        """Each job paid or denied by its own slot's event; a reverted batch goes back."""
        crash.point("batch_before_final")
        sub = self.sub
        lead = jobs[0]
        assert lead.tx_hash is not None and lead.block_number is not None
        depth = (
            f"block {lead.block_number}, head {head}: {head - lead.block_number + 1} confirmations"
        )
        slots = self.slots(lead.tx_hash)
        if int(receipt["status"]) != 1:
            self._reverted(jobs, slots, receipt, depth)
            return
        outcomes = sub.settlement.outcomes(receipt)
        changes = []
        for job in jobs:
            slot = slots.get(job.id)
            outcome = outcomes[slot] if slot is not None and slot < len(outcomes) else None
            if outcome is None or outcome.policy_id != job.policy_id:
                changes.append(
                    Change(
                        job,
                        JobState.FAILED,
                        reason=f"mined without a ClaimPaid or ClaimDenied event for slot {slot}"
                        f" (policy {job.policy_id})",
                        detail=depth,
                    )
                )
            else:
                changes.append(
                    Change(
                        job,
                        JobState.PAID if outcome.paid else JobState.DENIED,
                        {"claim_id": outcome.claim_id, "amount": outcome.amount},
                        detail=f"{depth}; slot {slot} of a batch of {len(slots)}",
                    )
                )
        self._observe(self.apply(changes))

    def _reverted(
        self, jobs: list[Job], slots: dict[str, int], receipt: TxReceipt, depth: str
    ) -> None:
        """A batch mined but reverted (nothing recorded): the claim its error names fails, the
        others return to ``proved`` (to be batched again; alone when none is named)."""
        sub = self.sub
        reason, error = sub.settlement.revert_error(receipt)
        by_slot = sorted(jobs, key=lambda j: slots.get(j.id, 0))
        failing: Job | None = None
        index = error.args.get("index") if error is not None else None
        policy = error.args.get("policyId") if error is not None else None
        hits = [j for j in by_slot if policy is not None and j.policy_id == policy]
        if _names_proof(error) and isinstance(index, int) and index < len(by_slot):
            self._alone.add(by_slot[index].id)  # the single verifier decides it
        elif len(hits) == 1:
            failing = hits[0]
        else:  # no claim named: each goes alone, where a revert is final
            self._alone.update(j.id for j in by_slot)
        back = {
            "nonce": None,
            "tx_hash": None,
            "block_number": None,
            "block_hash": None,
            "gas_used": None,
            "tx_status": None,
            "broadcast_at": None,
        }
        changes = [
            Change(
                job,
                JobState.FAILED,
                reason=f"transaction reverted on-chain: {reason}",
                detail=depth,
            )
            if job is failing
            else Change(
                job,
                JobState.PROVED,
                back,
                detail=f"batch {job.tx_hash} reverted on-chain ({reason}); sent again",
            )
            for job in by_slot
        ]
        log.warning("batch %s reverted on-chain: %s", jobs[0].tx_hash, reason)
        self._observe(self.apply(changes))

    def _observe(self, finals: list[Job]) -> None:
        now = time.time()
        for final in finals:
            if not final.state.final:
                continue
            self.sub.metrics.submission_latency.labels(final.state.value).observe(
                now - final.created_at
            )
            if final.submitted_at:
                self.sub.metrics.confirmation_latency.observe(now - final.submitted_at)
            log.info(
                "job %s: %s (claim %s, %s wei) after %.2f s",
                final.id,
                final.state.value,
                final.claim_id,
                final.amount,
                now - final.created_at,
            )


def _names_proof(error: DecodedError | None) -> bool:
    return error is not None and error.name in _PROOF_ERRORS
