"""Feeds queued jobs to the prover worker and stores what comes back.

The dispatcher keeps at most ``worker.capacity`` jobs in ``proving`` (running, or queued at the
backend right behind a running proof): it moves the oldest queued job to ``proving``
(compare-and-set), opens its sealed input, hands a :class:`ProveTask` to the worker and waits.
A proof is stored in the same transaction that drops the sealed input and moves the job to
``proved``. A permanent failure fails the job; a transient one re-queues it up to
``max_attempts``; a broken pool is restarted and its jobs re-queued.

Several relay instances may dispatch from one shared store: each claims a job for itself
(``claimed_by``), sends a heartbeat every :data:`HEARTBEAT_INTERVAL_S`, and its sweep re-queues
only its own orphans and the jobs of instances whose heartbeat stopped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool

from prover.exceptions import InvalidTransition, ProverFailed, SealedDataError
from prover.relay import crash
from prover.relay.metrics import RelayMetrics
from prover.relay.sealing import Sealer
from prover.relay.states import JobState
from prover.relay.store import JobStore
from prover.relay.worker import ProveResult, ProverWorker, ProveTask

log = logging.getLogger("zkcare.relay.dispatcher")
#: How often (and after how long) ``proving`` jobs without a task are re-queued.
SWEEP_INTERVAL_S = 10.0
#: How often the dispatcher tells a shared store that its instance is alive.
HEARTBEAT_INTERVAL_S = 2.0


class Dispatcher:
    """Moves jobs from ``queued`` through ``proving`` to ``proved``."""

    def __init__(
        self,
        store: JobStore,
        sealer: Sealer,
        worker: ProverWorker,
        metrics: RelayMetrics,
        model_keys: dict[tuple[str, int], str],
        max_attempts: int = 3,
        on_proved: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.worker = worker
        self.metrics = metrics
        self.model_keys = model_keys
        self.max_attempts = max_attempts
        self.on_proved = on_proved
        self.wake = threading.Event()
        self._inflight: dict[Future[ProveResult], tuple[str, float]] = {}
        self.busy_seconds = 0.0
        self._last_sweep = time.monotonic()
        self._last_beat = -math.inf
        self.proved = 0

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set."""
        while not stop.is_set():
            try:
                self._beat()
                self._fill()
                if self._inflight:
                    done, _ = wait(list(self._inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                    for fut in done:
                        self._collect(fut)
                else:
                    self.wake.wait(0.5)
                    self.wake.clear()
            except Exception as exc:  # keep dispatching; the job store stays consistent
                log.error("dispatcher error: %s: %s", type(exc).__name__, exc)
                time.sleep(0.5)

    def _beat(self) -> None:
        """The instance's heartbeat in a shared store (before the first claim, then every
        :data:`HEARTBEAT_INTERVAL_S`); a store of one relay needs none."""
        now = time.monotonic()
        if self.store.shared and now - self._last_beat >= HEARTBEAT_INTERVAL_S:
            self.store.heartbeat()
            self._last_beat = now

    def _sweep(self) -> None:
        """Re-queue ``proving`` jobs that no task is working on: this instance's (after an
        internal error), and on a shared store those of instances that went silent."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_INTERVAL_S:
            return
        self._last_sweep = now
        mine = {job_id for job_id, _ in self._inflight.values()}
        me = self.store.instance_id
        for job in self.store.list_jobs([JobState.PROVING], limit=1000):
            if job.claimed_by not in (None, me):
                continue  # another instance's: its own sweep, or the silent-instance rule
            if job.id not in mine and time.time() - job.updated_at > SWEEP_INTERVAL_S:
                log.warning("job %s: proving without a task; re-queued", job.id)
                self._requeue(job.id, "orphaned while proving")
        if self.store.shared:
            taken = self.store.requeue_proving("its relay instance went silent", own=False)
            if taken:
                log.warning("re-queued %d jobs of relay instances that went silent", taken)
                self.wake.set()

    def _fill(self) -> None:
        self._sweep()
        while len(self._inflight) < self.worker.capacity:
            job = self.store.claim_next_queued()
            if job is None:
                return
            if job.sealed_input is None:  # cannot happen: queued jobs are sealed
                self.store.transition(
                    job.id, JobState.PROVING, JobState.FAILED, reason="input missing"
                )
                continue
            try:
                features, salt = self.sealer.open(job.id, job.sealed_input)
            except SealedDataError as exc:
                self.store.transition(
                    job.id, JobState.PROVING, JobState.FAILED, reason=str(exc), sealed_input=None
                )
                continue
            key = self.model_keys.get((job.model, job.model_version))
            if key is None:
                self.store.transition(
                    job.id,
                    JobState.PROVING,
                    JobState.FAILED,
                    reason=f"model {job.model} v{job.model_version} is no longer configured",
                    sealed_input=None,
                )
                continue
            task = ProveTask(job.id, key, features, salt)
            del features, salt
            try:
                fut = self.worker.submit(task)
            except Exception as exc:  # e.g. a pool that broke between two jobs
                log.error("prover backend refused a task: %s; restarting it", type(exc).__name__)
                self.metrics.retries.labels("worker_restart").inc()
                self._requeue(job.id, "prover backend unavailable")
                self.worker.restart()
                return
            self._inflight[fut] = (job.id, time.time())
            log.info("job %s: proving (attempt %d)", job.id, job.prove_attempts)

    def _collect(self, fut: Future[ProveResult]) -> None:
        job_id, started = self._inflight.pop(fut)
        try:
            result = fut.result()
        except ProverFailed as exc:
            self._failed(job_id, exc.reason, exc.permanent)
            return
        except BrokenProcessPool:
            log.error("prover pool broke; restarting it and re-queueing its jobs")
            self.metrics.retries.labels("worker_restart").inc()
            self.worker.restart()
            self._requeue(job_id, "prover process died")
            for other, (other_id, _) in list(self._inflight.items()):
                other.cancel()
                self._requeue(other_id, "prover process died")
            self._inflight.clear()
            return
        except Exception as exc:
            self._failed(job_id, type(exc).__name__, permanent=False)
            return
        crash.point("proved")
        self.busy_seconds += result.seconds
        self.proved += 1
        self.metrics.proving_seconds.observe(result.seconds)
        try:
            self.store.transition(
                job_id,
                JobState.PROVING,
                JobState.PROVED,
                sealed_input=None,
                proof=result.proof,
                instances=result.instances,
                input_commitment=result.commitment,
                prove_seconds=result.seconds,
                proved_at=time.time(),
            )
        except InvalidTransition as exc:
            log.warning("job %s: proof discarded: %s", job_id, exc)
            return
        log.info(
            "job %s: proved in %.2f s (waited %.2f s at the prover)",
            job_id,
            result.seconds,
            max(0.0, result.started_at - started),
        )
        if self.on_proved is not None:
            self.on_proved.set()

    def _failed(self, job_id: str, reason: str, permanent: bool) -> None:
        job = self.store.get(job_id)
        if permanent or job.prove_attempts >= self.max_attempts:
            log.warning("job %s: proving failed (final): %s", job_id, reason)
            self.store.transition(
                job_id,
                JobState.PROVING,
                JobState.FAILED,
                reason=f"proving failed: {reason}",
                sealed_input=None,
            )
        else:
            self.metrics.retries.labels("prove_retry").inc()
            self._requeue(job_id, f"proving failed, retrying: {reason}")

    def _requeue(self, job_id: str, detail: str) -> None:
        try:
            self.store.transition(job_id, JobState.PROVING, JobState.QUEUED, detail=detail)
        except InvalidTransition as exc:
            log.warning("job %s: not re-queued: %s", job_id, exc)
        self.wake.set()
