"""Turns proved jobs into settled claims: sign, persist, broadcast, track, replace, finalize.

One thread runs :meth:`Submitter.step` in a loop. Each step:

1. **Reconciles** (at start and after any RPC error or failover): checks the chain id, syncs the
   nonce manager with the chain and marks every in-flight transaction for re-broadcast.
2. **Tracks** every in-flight job, in nonce order:
   - ``signed`` (persisted, maybe never broadcast — e.g. a crash right after signing): mined →
     ``confirmed``; else broadcast the persisted raw transaction (``already known`` counts as
     sent) → ``submitted``;
   - ``submitted``: mined → ``confirmed``; nonce used on-chain by a transaction that is none of
     ours (for longer than a grace period) → back to ``proved`` (re-signed with a new nonce); no
     receipt after ``stuck_timeout_s`` → **replaced** at the same nonce with fees bumped ≥ 10 %,
     up to ``max_replacements`` and ``max_fee_gwei``;
   - ``confirmed``: receipt gone (reorg) → back to ``submitted`` and re-broadcast; after
     ``confirmations`` blocks → ``paid`` / ``denied`` from the contract's event (``failed`` if
     the transaction reverted).
3. **Submits** proved jobs: attestation signed by the hospital key, ``eth_call`` simulation (a
   revert is final: ``failed`` with the decoded error, no retry), gas limit (the model
   version's known limit, confirmed by running the simulation with exactly that gas; else
   measured with ``eth_createAccessList``, see :meth:`Submitter._simulate`), balance check
   (short of funds → pause, no nonce is taken), nonce, EIP-1559 fees, sign, **persist** (job
   ``signed`` + attempt row in one transaction), broadcast. A new nonce is only signed when no
   job is left in ``signed`` (every earlier nonce reached a node), so there is never a gap.

Exactly once: a job has at most one nonce at a time and every transaction of a job carries the
same claim; all of a job's attempts share that nonce, so at most one can be mined. The contract
adds a second line of defence: the claim's record nullifier and input commitment can be settled
only once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.types import BlockData, TxReceipt

from prover.attestation import MAX_ATTESTATION_TTL, Attestation, sign_attestation
from prover.exceptions import ChainUnavailable, InvalidTransition
from prover.relay import crash
from prover.relay.batching import Batcher
from prover.relay.chain import (
    Broadcast,
    RpcPool,
    SettlementClient,
    SimulationReverted,
    get_receipt,
    is_known,
    send_raw,
)
from prover.relay.metrics import RelayMetrics
from prover.relay.nonces import NonceManager
from prover.relay.states import JobState
from prover.relay.store import Attempt, Job, JobStore

log = logging.getLogger("zkcare.relay.submitter")
GWEI = 10**9
NEW_JOBS_PER_STEP = 16
#: How long "nonce used, none of our transactions known" must persist before re-signing.
FOREIGN_NONCE_GRACE_S = 5.0


@dataclass(frozen=True)
class SubmitterConfig:
    """Transaction policy (from the relay settings)."""

    confirmations: int = 2
    stuck_timeout_s: float = 30.0
    fee_bump_percent: int = 12
    max_replacements: int = 5
    max_fee_wei: int = 500 * GWEI
    priority_fee_wei: int = GWEI
    gas_limit_multiplier: float = 1.25
    attestation_ttl_s: int = 86_400
    poll_interval_s: float = 0.2
    #: Claims per ``submitClaimsBatched`` (1: every claim alone, as ``submitClaim``).
    batch_max_size: int = 1
    #: How long the oldest proved job of a batchable model version waits for companions.
    batch_max_wait_s: float = 5.0


class Submitter:
    """The only component that signs and sends transactions."""

    def __init__(
        self,
        store: JobStore,
        rpc: RpcPool,
        settlement: SettlementClient,
        hospital: LocalAccount,
        account: LocalAccount,
        config: SubmitterConfig,
        metrics: RelayMetrics,
        fence: Callable[[], None] | None = None,
    ) -> None:
        """``fence``: raises unless this instance may still sign (the lease's fencing check,
        :mod:`prover.relay.lease`); called before every new signature."""
        self.store = store
        self.rpc = rpc
        self.settlement = settlement
        self.hospital = hospital
        self.account = account
        self.config = config
        self.metrics = metrics
        self.fence = fence
        self.nonces = NonceManager(store, account.address)
        self.chain_id: int | None = None
        self.chain_ok = False
        self.paused_reason: str | None = None
        self.last_error: str | None = None
        self._needs_reconcile = True
        self._rebroadcast_all = False
        self._pause_until = 0.0
        self._suspect: dict[str, float] = {}
        self._access_list_gas = True
        self._last_head: Any = None
        self._head: BlockData | None = None
        self._mined_nonce: int | None = None
        self._funds: int | None = None
        self._gas_limits: dict[tuple[str, int], int] = {}
        self.foreign_nonce_grace_s = FOREIGN_NONCE_GRACE_S
        self.wake = threading.Event()
        #: Held for each pass; whoever else signs with this key (research-bounty evaluations)
        #: holds it from reading its nonce until a node has the transaction.
        self.signing = threading.Lock()
        self.batcher = Batcher(self)
        metrics.chain_up.set_function(lambda: float(self.chain_ok))
        metrics.submitter_paused.set_function(lambda: float(self.paused_reason is not None))

    # ------------------------------------------------------------------ loop

    def mark_failover(self, _old: int = 0, _new: int = 0) -> None:
        """Called by the RPC pool after switching endpoints."""
        self.metrics.retries.labels("failover").inc()
        self._needs_reconcile = True

    def request_reconcile(self) -> None:
        """Reconcile before the next pass (this instance just became the active submitter)."""
        self._needs_reconcile = True
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, backing off while the chain is unreachable."""
        delay = self.config.poll_interval_s
        while not stop.is_set():
            try:
                with self.signing:
                    self.step()
            except ChainUnavailable as exc:
                self._chain_down(exc)
                delay = min(max(delay * 2, self.config.poll_interval_s), 5.0)
            except Exception as exc:  # keep the loop alive; the error is logged and retried
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("submitter step failed: %s", self.last_error)
                self._needs_reconcile = True
                self.metrics.retries.labels("rpc_error").inc()
                delay = min(max(delay * 2, self.config.poll_interval_s), 5.0)
            else:
                delay = self.config.poll_interval_s
            self.wake.wait(delay)
            self.wake.clear()

    def _chain_down(self, exc: ChainUnavailable) -> None:
        if self.chain_ok or self.last_error is None:
            log.warning("chain unreachable, jobs wait: %s", exc)
        self.chain_ok = False
        self.last_error = str(exc)[:300]
        self._needs_reconcile = True
        self.metrics.retries.labels("rpc_error").inc()

    def step(self) -> None:
        """One pass: reconcile if needed, track in-flight jobs, submit proved ones."""
        self._head = None
        self._mined_nonce = None
        self._funds = None
        if self._needs_reconcile:
            self.reconcile()
        self._track()
        self._submit_new()
        if not self.chain_ok:
            log.info("chain reachable via %s", self.rpc.current)
        self.chain_ok = True
        self.last_error = None

    def reconcile(self) -> None:
        """Check the chain (:meth:`RpcPool.chain_id` refuses another chain), resync nonces,
        re-broadcast what is in flight."""
        chain_id = self.rpc.chain_id()
        self.chain_id = chain_id
        pending = self._nonce_at("pending")
        nxt = self.nonces.sync(pending)
        log.info(
            "reconciled with chain %d via %s: next nonce %d (chain pending %d)",
            chain_id,
            self.rpc.current,
            nxt,
            pending,
        )
        self._rebroadcast_all = True
        self._needs_reconcile = False

    def _latest(self) -> BlockData:
        """The latest block, fetched once per pass (tracking, expiry and fees share it)."""
        if self._head is None:
            self._head = self.rpc.call(lambda w3: w3.eth.get_block("latest"))
        return self._head

    def _nonce_mined(self) -> int:
        """The submitter's nonce at the latest block, fetched at most once per pass."""
        if self._mined_nonce is None:
            self._mined_nonce = self._nonce_at("latest")
        return self._mined_nonce

    def _nonce_at(self, block: str) -> int:
        address = self.account.address
        return int(self.rpc.call(lambda w3: w3.eth.get_transaction_count(address, block)))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ tracking

    def _track(self) -> None:
        jobs = every = self.store.in_flight()
        if not jobs:
            self._rebroadcast_all = False
            return
        head = self._latest()
        new_head = head["hash"] != self._last_head
        if not (new_head or self._rebroadcast_all):
            # Nothing was mined (or reorged) since the last pass, so no receipt can have
            # appeared or vanished: only time-driven work is due.
            now = time.time()
            jobs = [
                j
                for j in jobs
                if j.state == JobState.SIGNED
                or j.id in self._suspect
                or (
                    j.state == JobState.SUBMITTED
                    and now - (j.broadcast_at or j.updated_at) >= self.config.stuck_timeout_s
                )
            ]
            if not jobs:
                return
        head_number = int(head["number"])
        batched = self.batcher.batched(jobs)  # jobs whose transaction is a batch's
        tracked: set[int] = set()
        for job in jobs:
            if job.id in batched:
                assert job.nonce is not None
                if job.nonce not in tracked:  # the batch's jobs share one nonce
                    tracked.add(job.nonce)
                    self.batcher.track([j for j in every if j.nonce == job.nonce], head_number)
            elif job.state == JobState.SIGNED:
                self._track_signed(job, self.store.attempts(job.id), head_number)
            elif job.state == JobState.SUBMITTED:
                self._track_submitted(job, self.store.attempts(job.id), head_number)
            elif job.state == JobState.CONFIRMED:
                self._track_confirmed(job, head_number)
        self._last_head = head["hash"]
        self._rebroadcast_all = False

    def _find_receipt(self, attempts: list[Attempt]) -> tuple[Attempt, TxReceipt] | None:
        for attempt in reversed(attempts):
            receipt = get_receipt(self.rpc, attempt.tx_hash)
            if receipt is not None:
                return attempt, receipt
        return None

    def _mined_or_taken(self, job: Job, attempts: list[Attempt], head: int) -> bool:
        """Confirm the job if one of its attempts was mined; True if nothing more to do now."""
        found = self._find_receipt(attempts)
        if found is not None:
            self._confirm(job, found[0], found[1], head)
            return True
        return self._nonce_taken(job, attempts)

    def _track_signed(self, job: Job, attempts: list[Attempt], head: int) -> None:
        if self._mined_or_taken(job, attempts, head):
            return
        self._broadcast_attempt(job, attempts[-1])

    def _nonce_taken(self, job: Job, attempts: list[Attempt]) -> bool:
        """True while the chain says the job's nonce is used but no attempt has a receipt.

        A node can report the new nonce a moment before it serves the receipt (or, behind a
        load balancer, two nodes disagree), so the job is released to a new nonce only when
        none of its transactions is known and the condition persisted for a while.
        """
        assert job.nonce is not None
        if self._nonce_mined() <= job.nonce:
            self._suspect.pop(job.id, None)
            return False
        if any(is_known(self.rpc, a.tx_hash) for a in attempts):
            return True  # ours; its receipt will show up
        first = self._suspect.setdefault(job.id, time.monotonic())
        if time.monotonic() - first >= self.foreign_nonce_grace_s:
            self._suspect.pop(job.id, None)
            self._release_nonce(job)
        return True

    def _track_submitted(self, job: Job, attempts: list[Attempt], head: int) -> None:
        if self._mined_or_taken(job, attempts, head):
            return
        age = time.time() - (job.broadcast_at or job.updated_at)
        if age >= self.config.stuck_timeout_s:
            self._replace(job, f"no receipt after {age:.0f} s")
        elif self._rebroadcast_all:
            outcome = send_raw(self.rpc, attempts[-1].raw_tx)
            self.metrics.retries.labels("rebroadcast").inc()
            log.info("job %s: re-broadcast nonce %d: %s", job.id, job.nonce, outcome.value)

    def _release_nonce(self, job: Job) -> None:
        """The job's nonce was used by a transaction that is not one of its attempts."""
        log.warning(
            "job %s: nonce %s was used by another transaction; re-signing with a new nonce",
            job.id,
            job.nonce,
        )
        self.metrics.retries.labels("foreign_nonce").inc()
        self.store.transition(
            job.id,
            job.state,
            JobState.PROVED,
            detail=f"nonce {job.nonce} used by another transaction",
            nonce=None,
            tx_hash=None,
            broadcast_at=None,
        )
        self.nonces.invalidate()
        self._needs_reconcile = True

    def _confirm(self, job: Job, attempt: Attempt, receipt: TxReceipt, head: int) -> None:
        job = self.store.transition(
            job.id,
            job.state,
            JobState.CONFIRMED,
            detail=f"mined in block {receipt['blockNumber']}",
            nonce=attempt.nonce,
            tx_hash=attempt.tx_hash,
            block_number=int(receipt["blockNumber"]),
            block_hash=receipt["blockHash"].to_0x_hex(),
            gas_used=int(receipt["gasUsed"]),
            tx_status=int(receipt["status"]),
        )
        self._suspect.pop(job.id, None)
        log.info(
            "job %s: %s mined in block %d (gas %d, status %d)",
            job.id,
            attempt.tx_hash,
            job.block_number,
            job.gas_used,
            job.tx_status,
        )
        self._track_confirmed(job, max(head, job.block_number or 0), receipt)

    def _track_confirmed(self, job: Job, head: int, receipt: TxReceipt | None = None) -> None:
        assert job.tx_hash is not None and job.block_number is not None
        receipt = receipt or get_receipt(self.rpc, job.tx_hash)
        if receipt is None:
            self._reorged(job)
            return
        if receipt["blockHash"].to_0x_hex() != job.block_hash:
            self.store.transition(
                job.id,
                JobState.CONFIRMED,
                JobState.CONFIRMED,
                detail="re-mined in another block after a reorg",
                block_number=int(receipt["blockNumber"]),
                block_hash=receipt["blockHash"].to_0x_hex(),
                gas_used=int(receipt["gasUsed"]),
                tx_status=int(receipt["status"]),
            )
            return
        if head - job.block_number + 1 < self.config.confirmations:
            return
        # The receipt was fetched in this pass, after ``head``: it is still in the same block
        # with ``head`` deep enough, so the job is final.
        self._finalize(job, receipt, head)

    def _reorged(self, job: Job) -> None:
        log.warning(
            "job %s: receipt of %s vanished (reorg); back to submitted", job.id, job.tx_hash
        )
        self.metrics.retries.labels("reorg").inc()
        job = self.store.transition(
            job.id,
            JobState.CONFIRMED,
            JobState.SUBMITTED,
            detail=f"receipt of {job.tx_hash} lost to a reorg",
            block_number=None,
            block_hash=None,
            gas_used=None,
            tx_status=None,
            broadcast_at=time.time(),
        )
        for attempt in self.store.attempts(job.id):
            if attempt.tx_hash == job.tx_hash:
                send_raw(self.rpc, attempt.raw_tx)

    def _finalize(self, job: Job, receipt: TxReceipt, head: int) -> None:
        crash.point("before_final")
        now = time.time()
        assert job.block_number is not None
        depth = (
            f"block {job.block_number}, head {head}: {head - job.block_number + 1} confirmations"
        )
        if int(receipt["status"]) != 1:
            why = self.settlement.revert_reason(receipt)
            final = self.store.transition(
                job.id,
                JobState.CONFIRMED,
                JobState.FAILED,
                reason=f"transaction reverted on-chain: {why}",
                detail=depth,
            )
        else:
            outcome = self.settlement.outcome(receipt)
            if outcome is None:
                final = self.store.transition(
                    job.id,
                    JobState.CONFIRMED,
                    JobState.FAILED,
                    reason="mined without a ClaimPaid or ClaimDenied event",
                    detail=depth,
                )
            else:
                final = self.store.transition(
                    job.id,
                    JobState.CONFIRMED,
                    JobState.PAID if outcome.paid else JobState.DENIED,
                    detail=depth,
                    claim_id=outcome.claim_id,
                    amount=outcome.amount,
                )
        self.metrics.submission_latency.labels(final.state.value).observe(now - final.created_at)
        if final.submitted_at:
            self.metrics.confirmation_latency.observe(now - final.submitted_at)
        log.info(
            "job %s: %s (claim %s, %s wei) after %.2f s",
            final.id,
            final.state.value,
            final.claim_id,
            final.amount,
            now - final.created_at,
        )

    # ------------------------------------------------------------------ sending

    def _fees(self) -> tuple[int, int]:
        """``(maxFeePerGas, maxPriorityFeePerGas)`` for the next block, capped."""
        block = self._latest()
        base = int(block.get("baseFeePerGas", 0))
        prio = min(self.config.priority_fee_wei, self.config.max_fee_wei)
        return min(2 * base + prio, self.config.max_fee_wei), prio

    def _claim(self, job: Job, attested_at: int) -> tuple[object, ...]:
        """The ``ClaimSettlement.Claim`` tuple of a proved job attested at ``attested_at``."""
        assert job.input_commitment is not None and job.proof is not None
        assert job.instances is not None and job.attestation_expiry is not None
        assert job.signature is not None
        return (
            job.policy_id,
            self.hospital.address,
            attested_at,
            job.attestation_expiry,
            job.record_nullifier,
            job.input_commitment,
            job.signature,
            job.proof,
            list(job.instances),
        )

    def _build_tx(
        self, data: bytes, nonce: int, gas: int, max_fee: int, prio: int
    ) -> dict[str, Any]:
        return {
            "type": 2,
            "chainId": self._chain_id(),
            "nonce": nonce,
            "to": self.settlement.address,
            "value": 0,
            "data": "0x" + data.hex(),
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": prio,
        }

    def _simulate(self, job: Job, data: bytes) -> tuple[int, int, int]:
        """``eth_call`` the claim: ``(claimId, amount, gas limit)``, or :class:`SimulationReverted`
        (final).

        Claims of one model version cost nearly the same gas, dominated by the proof verifier.
        Once a limit is known for the model version, the simulation runs with exactly that gas:
        if it succeeds, the transaction with that limit executes the same way, and no separate
        gas measurement is needed (it would run the verifier twice more on the node). If it
        reverts (perhaps only for want of gas: the registry reports a verifier that ran out of
        gas as a rejected proof), the claim is simulated again without a cap, where a revert is
        final, and its gas is measured.
        """
        key = (job.model, job.model_version)
        known = self._gas_limits.get(key)
        if known is not None:
            try:
                claim_id, amount = self.settlement.simulate(self.account.address, data, gas=known)
            except SimulationReverted:
                log.info("job %s: simulation with %d gas reverted; simulating again", job.id, known)
            else:
                return claim_id, amount, known
        claim_id, amount = self.settlement.simulate(self.account.address, data)
        gas = math.ceil(self._gas_used(data) * self.config.gas_limit_multiplier)
        self._gas_limits[key] = max(gas, known or 0)
        return claim_id, amount, gas

    def _gas_used(self, data: bytes) -> int:
        """Gas the claim uses: one execution via ``eth_createAccessList`` (``eth_estimateGas``
        binary-searches with ~10 executions of the proof verification; used as a fallback)."""
        tx = {
            "from": self.account.address,
            "to": self.settlement.address,
            "data": "0x" + data.hex(),
        }
        if self._access_list_gas:
            answer = self.rpc.call(
                lambda w3: w3.provider.make_request("eth_createAccessList", [tx, "latest"])  # type: ignore[arg-type]
            )
            result = answer.get("result") if isinstance(answer, dict) else None
            if isinstance(result, dict) and result.get("gasUsed") and not result.get("error"):
                return int(result["gasUsed"], 16)
            self._access_list_gas = False
            log.info("node has no usable eth_createAccessList; estimating gas instead")
        return int(self.rpc.call(lambda w3: w3.eth.estimate_gas(tx)))  # type: ignore[arg-type]

    def _chain_id(self) -> int:
        if self.chain_id is None:
            self.chain_id = self.rpc.chain_id()
        return self.chain_id

    def _sign(self, tx: dict[str, Any], job_id: str) -> Attempt:
        signed = self.account.sign_transaction(tx)
        self.metrics.transactions.inc()
        return Attempt(
            tx_hash=signed.hash.to_0x_hex(),
            job_id=job_id,
            nonce=int(tx["nonce"]),
            raw_tx=bytes(signed.raw_transaction),
            max_fee=int(tx["maxFeePerGas"]),
            priority_fee=int(tx["maxPriorityFeePerGas"]),
            gas_limit=int(tx["gas"]),
        )

    def _broadcast_attempt(
        self, job: Job, attempt: Attempt, *, may_replace: bool = True
    ) -> Broadcast:
        """Send a persisted transaction; on acceptance the job is (still) ``submitted``."""
        outcome = send_raw(self.rpc, attempt.raw_tx)
        if outcome.accepted:
            crash.point("after_broadcast")
            now = time.time()
            if job.state == JobState.SIGNED:
                self.store.transition(
                    job.id,
                    JobState.SIGNED,
                    JobState.SUBMITTED,
                    detail=f"{attempt.tx_hash} {outcome.value}",
                    broadcast_at=now,
                    submitted_at=job.submitted_at or now,
                )
                crash.point("after_submit")
            else:
                self.store.transition(job.id, job.state, job.state, broadcast_at=now)
            if self.paused_reason is not None:
                self.paused_reason = None
            return outcome
        if job.state == JobState.SUBMITTED:  # wait a full timeout before trying again
            self.store.transition(job.id, job.state, job.state, broadcast_at=time.time())
        if outcome == Broadcast.NO_FUNDS:
            self._pause(f"node rejected nonce {attempt.nonce}: insufficient funds")
        elif outcome == Broadcast.UNDERPRICED and job.state == JobState.SIGNED and may_replace:
            self._replace(job, "node rejected the fees")
        elif outcome == Broadcast.NONCE_USED:
            log.info("job %s: nonce %d already used; checking receipts", job.id, attempt.nonce)
        else:
            log.warning("job %s: broadcast of %s: %s", job.id, attempt.tx_hash, outcome.value)
            if job.state == JobState.SIGNED:  # nonces are ordered: every later claim waits
                self.paused_reason = (
                    f"node rejects the transaction with nonce {attempt.nonce} "
                    f"({outcome.value}); later claims wait behind it"
                )
        return outcome

    def _pause(self, reason: str) -> None:
        if self.paused_reason != reason:
            log.warning("submissions paused: %s", reason)
            self.metrics.retries.labels("out_of_funds").inc()
        self.paused_reason = reason
        self._pause_until = time.time() + max(1.0, self.config.poll_interval_s)

    def bumped_fees(self, last: Attempt, attempts: int) -> tuple[int, int] | None:
        """``(maxFeePerGas, maxPriorityFeePerGas)`` replacing ``last`` (the ``attempts``-th),
        bumped by ``fee_bump_percent``; None past ``max_replacements`` or when the cap leaves no
        legal (≥ 10 %) bump."""
        bump = 100 + self.config.fee_bump_percent
        max_now, prio_now = self._fees()
        prio = max(math.ceil(last.priority_fee * bump / 100), prio_now)
        max_fee = max(math.ceil(last.max_fee * bump / 100), max_now, prio)
        max_fee = min(max_fee, self.config.max_fee_wei)
        prio = min(prio, max_fee)
        legal = max_fee * 100 >= last.max_fee * 110 and prio * 100 >= last.priority_fee * 110
        if attempts > self.config.max_replacements or not legal:
            return None
        return max_fee, prio

    def _replace(self, job: Job, why: str) -> None:
        attempts = self.store.attempts(job.id)
        last = attempts[-1]
        fees = self.bumped_fees(last, len(attempts))
        if fees is None:
            log.warning(
                "job %s: %s, replacement cap reached (%d attempts, max fee %d wei); "
                "re-broadcasting nonce %d",
                job.id,
                why,
                len(attempts),
                last.max_fee,
                last.nonce,
            )
            self.metrics.retries.labels("rebroadcast").inc()
            self._broadcast_attempt(job, last, may_replace=False)
            return
        max_fee, prio = fees
        # The very claim (attestation included) the last attempt carried, with new fees.
        data = bytes(TypedTransaction.from_bytes(HexBytes(last.raw_tx)).as_dict()["data"])
        if self.fence is not None:
            self.fence()
        tx = self._build_tx(data, last.nonce, last.gas_limit, max_fee, prio)
        attempt = self._sign(tx, job.id)
        job = self.store.transition(
            job.id,
            job.state,
            job.state,
            detail=f"replacing {last.tx_hash} ({why}): max fee {last.max_fee} -> {max_fee} wei",
            attempt=attempt,
            tx_hash=attempt.tx_hash,
            broadcast_at=time.time(),
        )
        self.metrics.retries.labels("replacement").inc()
        log.info(
            "job %s: %s; replaced nonce %d with %s (max fee %d -> %d wei)",
            job.id,
            why,
            attempt.nonce,
            attempt.tx_hash,
            last.max_fee,
            max_fee,
        )
        crash.point("after_replace")
        self._broadcast_attempt(job, attempt, may_replace=False)

    def sign_next(self, data: bytes, gas: int, job_id: str, what: str) -> Attempt | None:
        """A transaction with calldata ``data`` signed at the next nonce (not yet persisted or
        consumed), after the funds check (short: pause, None, no nonce taken; ``what`` the
        transaction pays for) and the lease's fence (a stale holder must not sign)."""
        max_fee, prio = self._fees()
        address = self.account.address
        if self._funds is None:  # once per pass, less what this pass has committed since
            self._funds = int(self.rpc.call(lambda w3: w3.eth.get_balance(address)))
        if self._funds < gas * max_fee:
            self._pause(
                f"submitter {address} out of funds: balance {self._funds} wei, "
                f"{gas * max_fee} wei needed for {what}"
            )
            return None
        if self.fence is not None:
            self.fence()
        return self._sign(self._build_tx(data, self.nonces.peek(), gas, max_fee, prio), job_id)

    def consumed(self, attempt: Attempt) -> None:
        """``attempt`` (from :meth:`sign_next`) is persisted: its nonce is used and its gas is
        committed against this pass's funds."""
        self.nonces.consume(attempt.nonce)
        if self._funds is not None:
            self._funds -= attempt.gas_limit * attempt.max_fee

    def _submit_new(self) -> None:
        if self.store.list_jobs([JobState.SIGNED], limit=1):
            return  # an earlier nonce has not reached a node yet: never sign past it
        if time.time() < self._pause_until:
            return
        batching = self.config.batch_max_size > 1
        limit = max(NEW_JOBS_PER_STEP, 4 * self.config.batch_max_size) if batching else None
        jobs = self.store.list_jobs([JobState.PROVED], limit=limit or NEW_JOBS_PER_STEP)
        if not jobs:
            if self.paused_reason is not None:
                self.paused_reason = None
            return
        if not self.nonces.synced:
            self.nonces.sync(self._nonce_at("pending"))
        now = int(self._latest()["timestamp"])
        if batching:
            singles = self.batcher.submit(jobs, now)  # batches sent; what goes alone
            if singles is None:
                return
            jobs = singles
        for job in jobs:
            if not self._submit_one(job, now):
                return

    def attested(self, job: Job, now: int) -> tuple[Job, tuple[object, ...]]:
        """The job with a fresh hospital attestation (``now``: the head's timestamp) and its
        ``ClaimSettlement.Claim`` tuple."""
        assert job.input_commitment is not None
        # Attested when the hospital handed the record in (so a claim queued while the policy was
        # live keeps the contract's grace after expiry), but never earlier than the contract's
        # MAX_ATTESTATION_TTL allows for this expiry, and never after the head.
        expiry = now + min(self.config.attestation_ttl_s, MAX_ATTESTATION_TTL)
        attested_at = max(min(int(job.created_at), now), expiry - MAX_ATTESTATION_TTL)
        attestation = Attestation(
            job.policy_id,
            self.settlement.pool_of(job.policy_id),
            self.hospital.address,
            job.input_commitment,
            job.record_nullifier,
            attested_at,
            expiry,
        )
        signature = sign_attestation(
            self.hospital, attestation, self._chain_id(), self.settlement.address
        )
        job = dataclasses.replace(job, attestation_expiry=expiry, signature=signature)
        return job, self._claim(job, attested_at)

    def _submit_one(self, job: Job, now: int) -> bool:
        """Sign, persist and broadcast one proved job (``now``: the head's timestamp); False stops
        this pass."""
        assert job.input_commitment is not None and job.proof is not None
        attempts = self.store.attempts(job.id)
        if attempts:  # released earlier: make sure none of them was mined
            found = self._find_receipt(attempts)
            # A reverted one settled nothing (a batch that reverted on-chain sends its jobs back).
            if found is not None and int(found[1]["status"]) == 1:
                self._confirm(job, found[0], found[1], int(found[1]["blockNumber"]))
                return True
        job, claim = self.attested(job, now)
        assert job.attestation_expiry is not None and job.signature is not None
        expiry, signature = job.attestation_expiry, job.signature
        data = self.settlement.encode_submit(claim)
        try:
            claim_id, amount, gas = self._simulate(job, data)
        except SimulationReverted as exc:
            log.warning("job %s: %s; failing it (final)", job.id, exc)
            self.store.transition(job.id, JobState.PROVED, JobState.FAILED, reason=str(exc))
            return True
        attempt = self.sign_next(data, gas, job.id, "one claim")
        if attempt is None:
            return False
        nonce = attempt.nonce
        try:
            job = self.store.transition(
                job.id,
                JobState.PROVED,
                JobState.SIGNED,
                detail=f"nonce {nonce}, {attempt.tx_hash}",
                attempt=attempt,
                nonce=nonce,
                tx_hash=attempt.tx_hash,
                attestation_expiry=expiry,
                signature=signature,
            )
        except InvalidTransition:
            return True  # another pass took it; the nonce was not consumed
        self.consumed(attempt)
        log.info(
            "job %s: signed nonce %d %s (simulated claim %d, %d wei)",
            job.id,
            nonce,
            attempt.tx_hash,
            claim_id,
            amount,
        )
        crash.point("after_sign")
        outcome = self._broadcast_attempt(job, attempt)
        return outcome.accepted


def gwei(value: float) -> int:
    """Gwei (float, from settings) to wei."""
    return int(Web3.to_wei(value, "gwei"))
