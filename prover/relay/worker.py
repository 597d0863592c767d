"""Provers: the :class:`ProverWorker` seam and its local process-pool implementation.

A prover worker takes a :class:`ProveTask` (job id, model reference, the patient's raw features
and salt) and returns a :class:`ProveResult` (proof bytes, public instances, commitment, the
model's outputs) through a :class:`concurrent.futures.Future`. The relay depends only on that
protocol, so a distributed implementation (a task queue whose workers hold the bundles) can
replace :class:`LocalProverPool` without touching the job store or the submitter; see the
top-level README (section "Prover relay").

:class:`LocalProverPool` runs one spawned process per core. Each process loads every configured
model once (in the pool initializer): its model card, its bundle's own ``preprocess.json``
(hash-checked, :meth:`prover.models.build.LoadedModel.open`) and the files a proof reads
(proving key, compiled circuit, SRS), read from disk once, checked, and pinned in sealed
in-memory files (:func:`pin_bundle`), so no proof touches the bundle on disk and a bundle
replaced or deleted under a running relay cannot change what its workers prove with. EZKL 23's
Python ``prove`` accepts the key only as a path, so EZKL still deserializes it (from memory) on
every proof; measured ~35 ms of a ~0.85 s proof. Each process proves with one Rayon thread
(measured: two single-threaded provers beat one two-threaded prover by ~40 % on two cores),
writes EZKL's scratch files in a private directory and deletes them (input JSON and witness
inside :func:`prover.models.build.prove_record`, the proof file here). A failed proof's reason
carries EZKL's cause (:class:`EzklLogCapture`), with numbers that could be patient-derived
redacted. The pool holds one task queued behind each running one (``prefetch``), so a process
that finishes starts its next proof at once instead of waiting for the relay to store the last
result and hand out the next job. Workers die with the relay (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the relay leaves no orphan holding patient data.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prover.exceptions import (
    CircuitError,
    EzklError,
    InvalidPatientRecord,
    InvalidSalt,
    ProverFailed,
    ZkcareError,
)

if TYPE_CHECKING:
    from prover.models.build import LoadedModel
    from prover.zk.circuit import Bundle


@dataclass(frozen=True)
class ModelRef:
    """Where a prover finds a model version: its circuit bundle (card and preprocessing inside)."""

    key: str
    bundle_path: str


@dataclass(frozen=True)
class ProveTask:
    """One proof to produce. ``features`` and ``salt`` are patient data: never log them."""

    job_id: str
    model_key: str
    features: tuple[float, ...] = field(repr=False)
    salt: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class ProveResult:
    """A proof and its public values (nothing private)."""

    job_id: str
    proof: bytes
    instances: tuple[int, ...]
    commitment: int
    outputs: tuple[float, ...]  # the model's outputs, in the card's order
    seconds: float
    worker: str
    started_at: float = 0.0  # wall clock (epoch seconds) when the worker began this proof


class ProverWorker(Protocol):
    """What the relay needs from a prover backend (local pool, or a distributed one)."""

    @property
    def capacity(self) -> int:
        """How many tasks may be in flight at once, running or queued at the backend (the
        dispatcher never exceeds it)."""
        ...

    @property
    def parallelism(self) -> int:
        """How many proofs run at the same time (for Retry-After estimates and health)."""
        ...

    def submit(self, task: ProveTask) -> Future[ProveResult]:
        """Start proving; the future raises :class:`ProverFailed` on failure."""
        ...

    def restart(self) -> None:
        """Recover after the backend broke (its in-flight futures have failed)."""
        ...

    def close(self) -> None:
        """Stop; in-flight tasks are abandoned (their jobs are re-queued at next start)."""
        ...


# ---------------------------------------------------------------------------------- in workers


@dataclass
class _WorkerState:
    models: dict[str, LoadedModel]
    workdir: Path
    ezkl_log: EzklLogCapture


log = logging.getLogger("zkcare.relay.worker")
#: Numbers that may be derived from a patient's values: negative, fractional, or 4+ digits.
_VALUE = re.compile(r"-\d+(?:\.\d+)?|\d+\.\d+|\d{4,}")


def redact_values(text: str) -> str:
    """``text`` with every number that could be a (quantized) patient value replaced by ``…``.

    EZKL's witness errors quote intermediate integers of the forward pass (``decomposition
    error: integer -2207159 is too large …``); small circuit parameters (``base 256``, ``n 2``)
    stay readable.
    """
    return _VALUE.sub("…", text)


class EzklLogCapture(logging.Handler):
    """Holds the last error EZKL's Rust code logged (its cause of a failed witness or proof).

    EZKL raises ``General synthesis error`` and logs the cause (``[tensor] decomposition error:
    …``) separately. In a prover process EZKL's loggers stop here instead of reaching the
    process's stderr unredacted; each message is passed on, redacted, to the relay's log.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last_error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep (and log, redacted) one EZKL message."""
        lines = record.getMessage().strip().splitlines() or [""]
        text = redact_values(lines[0][:300])
        if record.levelno >= logging.ERROR:
            self.last_error = text
        log.warning("ezkl (%s): %s", record.name, text)

    def install(self) -> EzklLogCapture:
        """Route EZKL's loggers here (and nowhere else)."""
        from prover.zk.ezkl_api import RUST_LOGGERS

        for name in RUST_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.propagate = False
        return self


def failure_reason(exc: ZkcareError, ezkl_cause: str | None = None) -> str:
    """A job's one-line reason for ``exc``: EZKL's error with its logged cause, redacted."""
    if isinstance(exc, EzklError):
        text = str(exc)
        if ezkl_cause and ezkl_cause not in text:
            text = f"{text} ({ezkl_cause})"
    else:
        text = f"{type(exc).__name__}: {str(exc).strip()}"
    return redact_values((text.splitlines() or [""])[0][:500])


_STATE: _WorkerState | None = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:  # pragma: no cover - exotic libc
            pass


#: Bundle files that every proof reads (witness generation and proving).
PINNED_FILES = ("pk.key", "model.compiled", "kzg.srs")


def pin_bundle(bundle: Bundle) -> Bundle:
    """Read the files a proof uses once into sealed in-memory files (Linux ``memfd``).

    Returns a bundle whose ``pk``, ``compiled`` and ``srs`` paths are ``/proc/self/fd/N`` of
    this process; the seals forbid any change, so every later proof uses exactly the bytes read
    (and size-checked against the manifest) here. Elsewhere the bundle is returned as it is.
    """
    if not hasattr(os, "memfd_create") or not Path("/proc/self/fd").is_dir():
        return bundle  # pragma: no cover - not Linux
    pinned = {}
    for name in PINNED_FILES:
        fd = os.memfd_create(f"zkcare-{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        with bundle.file(name).open("rb") as src, open(fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)  # streamed: keys can be gigabytes
        size = os.fstat(fd).st_size
        expected = bundle.manifest.get("sizes", {}).get("pk_bytes") if name == "pk.key" else None
        if expected is not None and expected != size:
            os.close(fd)
            raise CircuitError(
                f"{bundle.path / name} has {size} bytes, the manifest says {expected}"
            )
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        pinned[name] = Path(f"/proc/self/fd/{fd}")
    return dataclasses.replace(bundle, pinned=pinned)


def init_worker(models: Mapping[str, ModelRef], work_root: str, threads: int) -> None:
    """Pool initializer: load every model once (card, own preprocessing, pinned bundle)."""
    global _STATE
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    from prover.models.build import LoadedModel
    from prover.zk.circuit import load_bundle

    loaded = {}
    for key, ref in models.items():
        model = LoadedModel.open(load_bundle(Path(ref.bundle_path)))  # reads preprocess.json
        loaded[key] = dataclasses.replace(model, bundle=pin_bundle(model.bundle))
    Path(work_root).mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix=f"prover-{os.getpid()}-", dir=work_root))
    _STATE = _WorkerState(loaded, workdir, EzklLogCapture().install())


def prove_task(task: ProveTask) -> ProveResult:
    """Prove one task in this worker process (messages never carry patient values)."""
    from prover.models.build import prove_record

    if _STATE is None:
        raise ProverFailed(task.job_id, "worker was not initialized", permanent=False)
    try:
        model = _STATE.models[task.model_key]
    except KeyError:
        raise ProverFailed(task.job_id, f"model {task.model_key} not loaded", True) from None
    started_at = time.time()
    started = time.perf_counter()
    _STATE.ezkl_log.last_error = None
    try:
        result = prove_record(model, task.features, _STATE.workdir, salt=task.salt)
    except InvalidPatientRecord as exc:  # its message names the feature, never a value
        raise ProverFailed(task.job_id, str(exc), True) from None
    except InvalidSalt:
        raise ProverFailed(task.job_id, "invalid salt", True) from None
    except ZkcareError as exc:
        # A witness is a function of the record and the (pinned) bundle: retrying cannot help.
        permanent = isinstance(exc, EzklError) and exc.operation == "gen_witness"
        reason = failure_reason(exc, _STATE.ezkl_log.last_error)
        raise ProverFailed(task.job_id, reason, permanent) from None
    finally:
        _scrub(_STATE.workdir)
    seconds = time.perf_counter() - started
    return ProveResult(
        job_id=task.job_id,
        proof=result.proof.proof,
        instances=tuple(result.proof.instances),
        commitment=result.commitment,
        outputs=result.outputs,
        seconds=seconds,
        worker=str(os.getpid()),
        started_at=started_at,
    )


def _scrub(workdir: Path) -> None:
    """Delete EZKL's scratch files (input, witness, proof) of this worker."""
    for path in workdir.iterdir():
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- the pool


class LocalProverPool:
    """A :class:`ProverWorker` backed by a spawned process pool on this machine."""

    def __init__(
        self,
        models: Mapping[str, ModelRef],
        workers: int,
        work_root: Path,
        threads_per_worker: int = 1,
        prefetch: int | None = None,
    ) -> None:
        self._models = dict(models)
        self._workers = max(1, workers)
        self._prefetch = self._workers if prefetch is None else max(0, prefetch)
        self._work_root = work_root
        self._threads = threads_per_worker
        wipe_work_root(work_root)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self._models, str(self._work_root), self._threads),
        )

    @property
    def capacity(self) -> int:
        """One task running per process, plus ``prefetch`` queued behind them."""
        return self._workers + self._prefetch

    @property
    def parallelism(self) -> int:
        """One proof per process."""
        return self._workers

    def submit(self, task: ProveTask) -> Future[ProveResult]:
        """Queue ``task`` on the pool."""
        return self._pool.submit(prove_task, task)

    def warm_up(self) -> None:
        """Start every worker process now (spawning and loading bundles take ~1 s)."""
        futures = [self._pool.submit(os.getpid) for _ in range(self._workers)]
        for fut in futures:
            fut.result()

    def restart(self) -> None:
        """Replace a broken pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self) -> None:
        """Shut the pool down and delete the scratch directories."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        wipe_work_root(self._work_root)


def wipe_work_root(work_root: Path) -> None:
    """Remove prover scratch space left by a crashed run (it may hold patient input)."""
    if work_root.exists():
        shutil.rmtree(work_root, ignore_errors=True)
