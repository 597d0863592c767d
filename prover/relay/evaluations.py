"""Research-bounty evaluations on a private benchmark: the hospital's rows never leave the relay.

A researcher posts logistic-regression weights (``POST /v1/evaluations``) naming a bounty and
the address to be paid. The relay checks the bounty (open, before its deadline, its evaluation
model version registered with *this relay's* benchmark circuit: the verifying key's sha256 on
chain equals the bundle's), proves the weights' accuracy on its private rows (baked into the
circuit, :func:`prover.models.bounty_eval.build_eval_bundle`) in a separate prover process, and
runs commit and reveal with the relay's submitter key through :class:`prover.research.Submission`
(state on disk, exactly once, resumable across restarts). The contract pays the researcher named
in the commitment; the researcher sends no transaction.

Privacy: the weights are the researcher's secret. They are kept only sealed (AES-256-GCM with the
relay's data key, bound to the evaluation id) until the evaluation is final, then deleted; the
prover's scratch files are deleted after each proof and at start-up; nothing logs or returns
them. The benchmark rows are never logged or returned either. The proved count is returned
only after the award (it is then public on chain anyway); before, a caller learns one bit per
evaluation: the bounty's minimum was reached, or not (``failed`` without a count).

Transactions: the relay's own submitter thread signs claims with the same key. An evaluation
holds the submitter's ``signing`` lock from reading its nonce until a node accepted the
transaction, then advances the submitter's nonce manager past it, so the two never sign the
same nonce (short of a node refusing a claim the relay already signed: then the claim goes
through the submitter's foreign-nonce path and is re-signed).

States: ``queued`` → ``proving`` (until the commitment is mined) → ``committed`` → ``awarded``;
or ``failed`` with a one-line reason (below the minimum, bounty won by someone else, …).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import re
import shutil
import signal
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, is_checksum_address, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from prover.exceptions import (
    BountyRejected,
    ChainUnavailable,
    EvaluationConflict,
    EvaluationNotFound,
    EvaluationsBusy,
    EzklError,
    InvalidInput,
    ProofError,
    RelayConfigError,
    ZkcareError,
)
from prover.models import bounty_eval as ev
from prover.relay.chain import ZERO_ADDRESS, RpcPool, classify_broadcast_error, redact_url
from prover.relay.sealing import Sealer
from prover.relay.settings import EvaluationConfig
from prover.relay.worker import EzklLogCapture, _die_with_parent, failure_reason, redact_values
from prover.research import AWARDED, RECLAIMED, Submission, Target
from prover.zk.circuit import Bundle

if TYPE_CHECKING:
    from prover.relay.schemas import EvaluationRequest
    from prover.relay.submitter import Submitter

log = logging.getLogger("zkcare.relay.evaluations")
REGISTRY_ACTIVE = 1
BELOW_MINIMUM = (
    "the model does not reach the bounty's minimum on this relay's benchmark; nothing was sent"
)
_METRIC = re.compile(r"\b(metric|correct)=\d+")
#: Far beyond what the evaluation circuit can take (its lookups overflow well before), far below
#: where EZKL's quantization of an input panics.
MAX_PARAMETER = 1e6


class EvaluationState(StrEnum):
    """Where an evaluation is."""

    QUEUED = "queued"
    PROVING = "proving"
    COMMITTED = "committed"
    AWARDED = "awarded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """Awarded or failed: nothing happens to it any more."""
        return self in (EvaluationState.AWARDED, EvaluationState.FAILED)


#: Submission states -> what the API reports while an evaluation runs.
_PROGRESS = {
    "new": EvaluationState.PROVING,
    "proved": EvaluationState.PROVING,
    "commit_signed": EvaluationState.PROVING,
    "committed": EvaluationState.COMMITTED,
    "reveal_signed": EvaluationState.COMMITTED,
}


@dataclass(frozen=True)
class PrivateBenchmark:
    """The relay's benchmark circuit (its rows are baked into the bundle: keep it here)."""

    bundle: Bundle
    size: int

    @property
    def vk_sha256(self) -> str:
        """What the registry records for a version proved with this circuit."""
        return str(self.bundle.manifest["sha256"]["vk"])


def resolve_benchmark(config: EvaluationConfig) -> PrivateBenchmark:
    """Load the private benchmark and build (or reuse) its evaluation bundle.

    Raises :class:`RelayConfigError` with one line that names the file, never a value of it.
    """
    path = config.benchmark
    try:
        benchmark = ev.load_benchmark(path)
        bundle = ev.build_eval_bundle(benchmark)
    except ZkcareError as exc:
        text = (str(exc).splitlines() or [""])[0]
        prefix = f"{path}: "
        if text.startswith(prefix):  # the rest may quote a malformed value: redact numbers
            text = prefix + redact_values(text[len(prefix) :])
        else:
            text = redact_values(text)
        raise RelayConfigError([f"evaluation.benchmark: {text}"]) from None
    return PrivateBenchmark(bundle, benchmark.size)


# ---------------------------------------------------------------------------- the prover process

_CAPTURE: EzklLogCapture | None = None


def _init_prover(threads: int) -> None:
    global _CAPTURE
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _CAPTURE = EzklLogCapture().install()


def _prove_here(
    bundle_path: str, params: list[float], context: int, workdir: str
) -> ev.EvaluationProof:
    """In the prover process: one evaluation proof (errors as a redacted one-line ProofError)."""
    from prover.zk.circuit import load_bundle

    if _CAPTURE is not None:
        _CAPTURE.last_error = None
    try:
        return ev.prove_evaluation(load_bundle(Path(bundle_path)), params, context, Path(workdir))
    except ZkcareError as exc:
        ezkl = exc.__cause__ if isinstance(exc.__cause__, EzklError) else None
        cause = _CAPTURE.last_error if _CAPTURE is not None else None
        reason = f"proving failed: {failure_reason(ezkl or exc, cause)}"
        if ezkl is not None and ezkl.operation == "gen_witness":
            raise WitnessRejected(reason) from None
        raise ProofError(reason) from None
    except Exception as exc:  # anything else: its type only (it cannot be unpickled otherwise)
        raise ProofError(f"proving failed: {type(exc).__name__}") from None


class WitnessRejected(ProofError):
    """The circuit cannot evaluate these weights (out of its range): final, not retried."""


class EvaluationProver:
    """One spawned process proving evaluations (EZKL holds the GIL for the whole proof, which
    would stall the relay's API and submitter threads if it ran in the relay process)."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_prover,
                    initargs=(self._threads,),
                )
            return self._pool

    def prove(
        self, bundle: Bundle, weights: ev.Weights, context: int, workdir: Path
    ) -> ev.EvaluationProof:
        """:data:`prover.research.ProveFn`: prove in the prover process, scrub scratch files."""
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        future = self._executor().submit(
            _prove_here, str(bundle.path), weights.flat(), context, str(workdir)
        )
        try:
            return future.result()
        except BrokenProcessPool:
            with self._lock:
                self._pool = None
            raise ProofError("proving failed: the evaluation prover process died") from None
        finally:
            scrub_workdir(workdir)

    def close(self) -> None:
        """Stop the prover process (a running proof is abandoned; it resumes at next start)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def scrub_workdir(workdir: Path) -> None:
    """Delete EZKL's input and witness files (they hold the weights) left in ``workdir``."""
    if workdir.is_dir():
        for path in workdir.iterdir():
            if path.name.startswith(("eval-input-", "eval-witness-")):
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- submissions


class _Stopping(Exception):
    """The relay is stopping: leave the submission where it is (it resumes at next start)."""


class RelaySubmission(Submission):
    """A :class:`Submission` sent with the relay's submitter key, next to its claim submitter."""

    def __init__(
        self, *args: Any, submitter: Submitter, stop: threading.Event, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._submitter = submitter
        self._stop = stop

    def _send(self, key: str, call: Any) -> None:
        """Sign and store (as the base class does), then broadcast at once, all under the
        submitter's signing lock, and move the submitter's next nonce past this one (or make
        it resync with the chain if the node did not take the transaction)."""
        if self._stop.is_set():
            raise _Stopping
        with self._submitter.signing:
            if self._submitter.fence is not None:
                self._submitter.fence()  # only the active submitter signs with the key
            super()._send(key, call)
            tx = self.state[key]
            try:
                self.w3.eth.send_raw_transaction(bytes.fromhex(tx["raw"].removeprefix("0x")))
                accepted = True
            except Exception as exc:  # the base class's broadcast sends it again, or reports it
                accepted = classify_broadcast_error(str(exc)).accepted
            if accepted:
                self._submitter.nonces.external(int(tx["nonce"]))
            else:
                self._submitter.nonces.invalidate()


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Evaluation:
    """An evaluation's stored record (public and operational data only, never the weights)."""

    id: str
    bounty_id: int
    researcher: str
    state: EvaluationState
    created_at: float
    updated_at: float
    reason: str | None = None
    failures: int = 0  # failed attempts (chain, node or prover trouble), each retried
    commit_tx: str | None = None
    reveal_tx: str | None = None
    block_number: int | None = None
    correct: int | None = None
    benchmark_size: int | None = None
    amount_wei: int | None = None
    client_id: str | None = None  # the relay client that asked for it

    @classmethod
    def load(cls, path: Path) -> Evaluation:
        data = json.loads(path.read_text())
        data["state"] = EvaluationState(data["state"])
        return cls(**data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Evaluations:
    """Intake, storage and the runner thread of research-bounty evaluations."""

    def __init__(
        self,
        config: EvaluationConfig,
        benchmark: PrivateBenchmark,
        *,
        rpc: RpcPool,
        submitter: Submitter,
        account: LocalAccount,
        sealer: Sealer,
        root: Path,
        prove_threads: int = 1,
        check_rpc: RpcPool | None = None,
    ) -> None:
        """``check_rpc``: the pool the request path reads bounties with (short timeouts)."""
        self.config = config
        self.benchmark = benchmark
        self.rpc = rpc
        self.check_rpc = check_rpc or rpc
        self.submitter = submitter
        self.account = account
        self.sealer = sealer
        self.root = root
        self.prover = EvaluationProver(prove_threads)
        self.address = str(to_checksum_address(config.bounty_contract))
        self._lock = threading.Lock()
        self._records: dict[str, Evaluation] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._abis: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._contracts: dict[int, tuple[Contract, Contract]] = {}
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(root.glob("*/evaluation.json")):
            record = Evaluation.load(path)
            self._records[record.id] = record

    # ------------------------------------------------------------------ lifecycle

    def start(self, stop: threading.Event) -> None:
        """Scrub scratch space, re-queue unfinished evaluations, start the runner thread."""
        self._stop = stop
        for record in sorted(self._records.values(), key=lambda r: r.created_at):
            shutil.rmtree(self._dir(record.id) / "submission" / "work", ignore_errors=True)
            if not record.state.final:
                self._queue.put(record.id)
        unfinished = self._queue.qsize()
        log.info(
            "evaluations: %d-patient private benchmark, ResearchBounty %s, %d unfinished",
            self.benchmark.size,
            self.address,
            unfinished,
        )
        self._thread = threading.Thread(target=self._run, name="evaluations", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the runner (after its current step) and the prover process."""
        self._stop.set()
        self.prover.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # ------------------------------------------------------------------ intake

    def _contracts_for(self, w3: Web3) -> tuple[Contract, Contract]:
        """(ResearchBounty, its ModelRegistry) bound to ``w3``."""
        found = self._contracts.get(id(w3))
        if found is None:
            if self._abis is None:
                from prover.relay.devchain import compiled

                self._abis = (compiled("ResearchBounty")[0], compiled("ModelRegistry")[0])
            bounty = w3.eth.contract(address=self.address, abi=self._abis[0])  # type: ignore[call-overload]
            registry = w3.eth.contract(
                address=bounty.functions.registry().call(), abi=self._abis[1]
            )
            found = self._contracts[id(w3)] = (bounty, registry)
        return found

    def check_bounty(self, bounty_id: int) -> None:
        """Refuse a bounty this relay cannot win (:class:`BountyRejected`, a 422).

        Raises :class:`prover.exceptions.ChainUnavailable` (503) when no endpoint answers.
        """

        def read(w3: Web3) -> tuple[Any, Any, int]:
            bounty, registry = self._contracts_for(w3)
            b = bounty.functions.getBounty(bounty_id).call()
            version = registry.functions.getModelVersion(b[6], b[5]).call()
            return b, version, int(w3.eth.get_block("latest")["timestamp"])

        b, version, now = self.check_rpc.call(read)
        status, deadline, scale, winner = int(b[2]), int(b[1]), int(b[3]), str(b[9])
        model, number = "0x" + bytes(b[6]).hex(), int(b[5])
        if status == 0:
            raise BountyRejected(bounty_id, f"no such bounty on ResearchBounty {self.address}")
        if status == AWARDED:
            raise BountyRejected(bounty_id, f"closed: already awarded to {winner}")
        if status == RECLAIMED:
            raise BountyRejected(bounty_id, "closed: reclaimed by its sponsor")
        if now >= deadline:
            raise BountyRejected(bounty_id, f"closed: its deadline {deadline} (unix time) passed")
        if int(version[1]) != REGISTRY_ACTIVE:
            raise BountyRejected(
                bounty_id, f"its evaluation model {model} version {number} is not active"
            )
        onchain = bytes(version[9]).hex()
        if onchain != self.benchmark.vk_sha256:
            raise BountyRejected(
                bounty_id,
                f"its evaluation model {model} version {number} is not this relay's benchmark "
                f"circuit (registered verifying key sha256 {onchain[:16]}…, this relay's "
                f"{self.benchmark.vk_sha256[:16]}…)",
            )
        ours = ev.context_scale(self.benchmark.bundle)
        if scale != ours:
            raise BountyRejected(
                bounty_id,
                f"its contextScale {scale} is not this circuit's {ours}: no proof wins it",
            )

    def submit(self, req: EvaluationRequest, client_id: str | None = None) -> Evaluation:
        """Validate and queue an evaluation.

        Raises InvalidInput / BountyRejected (422), EvaluationConflict (409), EvaluationsBusy
        (429) or ChainUnavailable (503); messages never quote a weight.
        """
        if len(req.weights) != ev.PARAMETERS - 1:
            raise InvalidInput(
                f"weights: need {ev.PARAMETERS - 1} numbers (one per standardized feature), "
                f"got {len(req.weights)}"
            )
        named = [(f"weights[{i}]", v) for i, v in enumerate(req.weights)] + [("bias", req.bias)]
        for name, value in named:
            if not -MAX_PARAMETER <= value <= MAX_PARAMETER:
                raise InvalidInput(f"{name} is outside [-{MAX_PARAMETER:g}, {MAX_PARAMETER:g}]")
        weights = ev.check_parameters(
            self.benchmark.bundle, ev.weights_of([*req.weights, req.bias])
        )
        if not is_address(req.researcher):
            raise InvalidInput("researcher: not an Ethereum address (0x and 40 hex digits)")
        digits = req.researcher[2:]
        if digits != digits.lower() and digits != digits.upper():
            if not is_checksum_address(req.researcher):
                raise InvalidInput("researcher: mixed-case address with a wrong EIP-55 checksum")
        researcher = str(to_checksum_address(req.researcher))
        if researcher == ZERO_ADDRESS:
            raise InvalidInput("researcher: the zero address cannot be paid")
        with self._lock:
            self._admit(req.bounty_id, researcher, client_id)
        self.check_bounty(req.bounty_id)
        now = time.time()
        record = Evaluation(
            id=uuid.uuid4().hex,
            bounty_id=req.bounty_id,
            researcher=researcher,
            state=EvaluationState.QUEUED,
            created_at=now,
            updated_at=now,
            client_id=client_id,
        )
        with self._lock:
            self._admit(req.bounty_id, researcher, client_id)
            directory = self._dir(record.id)
            directory.mkdir(mode=0o700)
            sealed = self.sealer.seal(record.id, weights.flat(), ())
            _write_atomic(directory / "weights.sealed", sealed)
            self._save(record)
        del weights
        log.info(
            "evaluation %s: queued (bounty %d, researcher %s)",
            record.id,
            record.bounty_id,
            record.researcher,
        )
        self._queue.put(record.id)
        return record

    def _admit(self, bounty_id: int, researcher: str, client_id: str | None = None) -> None:
        """One live (or awarded) evaluation per bounty and researcher; ``max_active`` at once.

        The 409 names the existing evaluation only to the client that asked for it."""
        active = 0
        for record in self._records.values():
            if not record.state.final:
                active += 1
            if (
                record.bounty_id == bounty_id
                and record.researcher == researcher
                and record.state != EvaluationState.FAILED
            ):
                if record.client_id != client_id:
                    raise EvaluationConflict(bounty_id, researcher, None, None)
                raise EvaluationConflict(bounty_id, researcher, record.id, record.state.value)
        if active >= self.config.max_active:
            raise EvaluationsBusy(active, self.config.max_active, retry_after=30)

    def get(self, evaluation_id: str) -> Evaluation:
        """A stored evaluation, or :class:`EvaluationNotFound`."""
        with self._lock:
            record = self._records.get(evaluation_id)
        if record is None:
            raise EvaluationNotFound(evaluation_id)
        return record

    # ------------------------------------------------------------------ storage

    def _dir(self, evaluation_id: str) -> Path:
        return self.root / evaluation_id

    def _save(self, record: Evaluation) -> None:
        data = asdict(record)
        data["state"] = record.state.value
        _write_atomic(self._dir(record.id) / "evaluation.json", json.dumps(data, indent=1).encode())
        self._records[record.id] = record

    def _update(self, evaluation_id: str, **changes: Any) -> Evaluation:
        with self._lock:
            record = replace(self._records[evaluation_id], updated_at=time.time(), **changes)
            self._save(record)
            return record

    def _weights(self, evaluation_id: str) -> ev.Weights:
        blob = (self._dir(evaluation_id) / "weights.sealed").read_bytes()
        values, _ = self.sealer.open(evaluation_id, blob)
        return ev.weights_of(values)

    # ------------------------------------------------------------------ the runner

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                evaluation_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._evaluate(evaluation_id)
            except Exception as exc:  # keep the runner alive; the evaluation fails
                log.error("evaluation %s: %s", evaluation_id, type(exc).__name__)
                self._finish(
                    evaluation_id, EvaluationState.FAILED, f"internal error ({type(exc).__name__})"
                )

    def _evaluate(self, evaluation_id: str) -> None:
        record = self.get(evaluation_id)
        try:
            weights = self._weights(evaluation_id)
        except (OSError, ZkcareError) as exc:
            self._finish(
                evaluation_id, EvaluationState.FAILED, f"weights unreadable ({type(exc).__name__})"
            )
            return
        while True:
            state = max(record.state, EvaluationState.PROVING, key=_ORDER.index)
            record = self._update(evaluation_id, state=state)
            try:
                outcome = self._attempt(record, weights)
            except _Stopping:
                return  # not a failure: it resumes at the next start
            except WitnessRejected as exc:  # the same weights would fail again
                self._finish(evaluation_id, EvaluationState.FAILED, str(exc))
                return
            except Exception as exc:  # chain, proof or node trouble: try again (resumable)
                if self._stop.is_set():
                    return
                reason = self._reason(exc)
                record = self._update(evaluation_id, failures=record.failures + 1)
                log.warning(
                    "evaluation %s: attempt %d of %d failed: %s",
                    evaluation_id,
                    record.failures,
                    self.config.max_attempts,
                    reason,
                )
                if record.failures >= self.config.max_attempts:
                    self._finish(evaluation_id, EvaluationState.FAILED, reason)
                    return
                if self._stop.wait(min(2.0**record.failures, 30.0)):
                    return
                continue
            self._conclude(record, outcome)
            return

    def _reason(self, exc: Exception) -> str:
        """One line for a failed attempt: proof errors arrive redacted, RPC URLs are redacted
        (a URL's path or query may hold an API key)."""
        if isinstance(exc, ChainUnavailable | requests.RequestException | OSError):
            return f"chain unreachable via {self.rpc.current} ({type(exc).__name__})"
        text = str(exc) if isinstance(exc, ZkcareError) else f"{type(exc).__name__}: {exc}"
        for url in self.rpc.urls:
            text = text.replace(url, redact_url(url))
        return (text.splitlines() or [""])[0][:300]

    def _attempt(self, record: Evaluation, weights: ev.Weights) -> dict[str, Any]:
        target = Target(self.rpc.urls[self.rpc.index], self.address, record.bounty_id)
        sub = RelaySubmission(
            target,
            self.account,
            self._dir(record.id) / "submission",
            timeout=self.config.timeout_s,
            poll=0.25,
            researcher=record.researcher,
            prove=self.prover.prove,
            submitter=self.submitter,
            stop=self._stop,
        )

        def progress(message: str) -> None:
            log.debug("evaluation %s: %s", record.id, message)
            now = _PROGRESS.get(sub.status)
            current = self.get(record.id)
            if now is not None and now != current.state:
                changes: dict[str, Any] = {"state": now}
                if "commit_tx" in sub.state:
                    changes["commit_tx"] = _hex(sub.state["commit_tx"]["hash"])
                self._update(record.id, **changes)
                log.info("evaluation %s: %s", record.id, now.value)

        sub.echo = progress
        return sub.run(self.benchmark.bundle, weights)

    def _conclude(self, record: Evaluation, state: dict[str, Any]) -> None:
        status = str(state.get("status"))
        txs = {
            name: _hex(state[name]["hash"]) for name in ("commit_tx", "reveal_tx") if name in state
        }
        if status == "awarded":
            award = state.get("award", {})
            self._finish(
                record.id,
                EvaluationState.AWARDED,
                None,
                correct=int(state["correct"]),
                benchmark_size=int(state["size"]),
                amount_wei=int(award.get("amount", 0)),
                block_number=award.get("block"),
                **txs,
            )
        elif status == "failed" and "correct" not in state:
            self._finish(record.id, EvaluationState.FAILED, BELOW_MINIMUM, **txs)
        else:  # lost, or refused by the contract
            reason = _METRIC.sub(r"\1=…", str(state.get("error", status)).splitlines()[0])
            self._finish(record.id, EvaluationState.FAILED, reason[:300], **txs)

    def _finish(
        self, evaluation_id: str, state: EvaluationState, reason: str | None, **changes: Any
    ) -> None:
        self._update(evaluation_id, state=state, reason=reason, **changes)
        (self._dir(evaluation_id) / "weights.sealed").unlink(missing_ok=True)
        shutil.rmtree(self._dir(evaluation_id) / "submission" / "work", ignore_errors=True)
        if state == EvaluationState.AWARDED:
            log.info("evaluation %s: awarded", evaluation_id)
        else:
            log.info("evaluation %s: failed: %s", evaluation_id, reason)


_ORDER = list(EvaluationState)


def _hex(value: str) -> str:
    return value if value.startswith("0x") else "0x" + value
