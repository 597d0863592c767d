"""The relay: job intake, the dispatcher and submitter threads, health, retention.

The request path never waits on the chain for more than :attr:`RelaySettings.intake_timeout_s`
per read (policy checks use their own RPC pool with that timeout, and skip the chain entirely
while the health probe finds it unreachable): a job whose policy cannot be checked is accepted
``held`` and checked by the background thread before it is proved. The probe reads the block
number every ``poll_interval_s``, so ``/healthz`` degrades within one poll interval of an outage.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from prover.attestation import record_nullifier
from prover.exceptions import (
    ChainUnavailable,
    InvalidPatientRecord,
    InvalidSalt,
    InvalidTransition,
    PolicyRejected,
    RelayConfigError,
    RelayError,
    UnknownModel,
    ZkcareError,
)
from prover.models.build import LoadedModel
from prover.models.card import ModelCard
from prover.models.preprocess import Preprocessor
from prover.relay.chain import ZERO_ADDRESS, ProductInfo, RpcPool, SettlementClient
from prover.relay.dispatcher import Dispatcher
from prover.relay.keys import RelayKeys, load_keys
from prover.relay.lease import LeaseKeeper, SubmitterLease
from prover.relay.metrics import RelayMetrics
from prover.relay.schemas import ChainHealth, Health, JobRequest
from prover.relay.sealing import Sealer
from prover.relay.settings import ModelConfig, RelaySettings
from prover.relay.states import JobState
from prover.relay.store import Job, JobStore, NewJob, open_store, stable_instance_id
from prover.relay.submitter import Submitter, SubmitterConfig, gwei
from prover.relay.worker import LocalProverPool, ModelRef, ProverWorker

if TYPE_CHECKING:
    from prover.relay.evaluations import Evaluations, PrivateBenchmark

log = logging.getLogger("zkcare.relay")
REQUEST_TAG = b"zkcare/relay-request/v1\x00"


@dataclass(frozen=True)
class ServedModel:
    """A configured model version, resolved to its bundle, model card and own preprocessing."""

    config: ModelConfig
    ref: ModelRef
    loaded: LoadedModel

    @property
    def model_id(self) -> bytes:
        """The registry's bytes32 id."""
        return self.config.model_id_bytes

    @property
    def card(self) -> ModelCard:
        """The bundle's model card (input ranges, outputs, instance layout)."""
        return self.loaded.card

    @property
    def preprocessor(self) -> Preprocessor:
        """The bundle's own preprocessing (hash-checked against the card)."""
        return self.loaded.preprocessor

    def check_record(self, features: Sequence[float]) -> None:
        """Validate a raw record against the card; the message names the model and the
        feature, never a value (:class:`InvalidPatientRecord`)."""
        try:
            self.card.check_record(features)
        except InvalidPatientRecord as exc:
            if self.card.name == self.config.name:
                raise
            raise InvalidPatientRecord(
                f"{self.config.name} v{self.config.version} (card {exc.reason})"
            ) from None


def resolve_models(configs: list[ModelConfig]) -> dict[tuple[str, int], ServedModel]:
    """Open (or build, for the default diagnostic model: its decision bundle, as ``deploy all``
    registers it) every configured bundle.

    Each model is proved with its own bundle and the preprocessing inside it; a bundle without
    a model card, or whose ``preprocess.json`` is missing or altered, is refused. A configured
    ``preprocess`` file is only checked against the bundle's own (never used instead of it).
    """
    from prover.models.breast_cancer import build_decision_bundle
    from prover.zk.circuit import load_bundle
    from prover.zk.hashing import sha256_file

    out: dict[tuple[str, int], ServedModel] = {}
    problems: list[str] = []
    for i, cfg in enumerate(configs):
        try:
            bundle = build_decision_bundle() if cfg.bundle is None else load_bundle(cfg.bundle)
            loaded = LoadedModel.open(bundle)
        except ZkcareError as exc:
            problems.append(f"models[{i}].bundle: {exc}")
            continue
        card = loaded.card
        if loaded.preprocessor.width != card.width:
            problems.append(
                f"models[{i}].bundle: {bundle.path.name}: its preprocessing takes "
                f"{loaded.preprocessor.width} features, its model card {card.width}"
            )
            continue
        if cfg.preprocess is not None and (
            not cfg.preprocess.is_file() or sha256_file(cfg.preprocess) != card.preprocessing.sha256
        ):
            problems.append(
                f"models[{i}].preprocess: {cfg.preprocess} is not the preprocessing the bundle "
                f"{bundle.path.name} was built with (models are proved with their bundle's own "
                f"{card.preprocessing.file}; remove the setting)"
            )
            continue
        ref = ModelRef(cfg.key, str(bundle.path))
        out[(cfg.name, cfg.version)] = ServedModel(cfg, ref, loaded)
    if problems:
        raise RelayConfigError(problems)
    return out


def load_data_key(settings: RelaySettings) -> bytes:
    """The data key: ``data_key`` (environment) or ``data_key_file`` (``0600``, outside
    ``data_dir``). A key file left in ``data_dir`` by an older relay is refused."""
    legacy = settings.data_dir / "input.key"
    if legacy.exists():
        raise RelayError(
            f"{legacy} holds the data key next to the job store (the old default): move it "
            "out of data_dir and set data_key_file to its new path (or give ZKCARE_RELAY_DATA_KEY)"
        )
    if settings.data_key is not None:
        return bytes.fromhex(settings.data_key.get_secret_value().strip().removeprefix("0x"))
    path = settings.data_key_file
    if path is None:
        raise RelayError(
            "no data key: set ZKCARE_RELAY_DATA_KEY (32 bytes hex) or data_key_file, a 0600 file "
            "outside data_dir (python -m prover.relay keys new-data-key PATH)"
        )
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except FileNotFoundError:
        raise RelayError(
            f"data_key_file {path} does not exist (create it: "
            f"python -m prover.relay keys new-data-key {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RelayError(f"data_key_file {path}: cannot read it ({type(exc).__name__})") from None
    if mode & 0o077:
        raise RelayError(
            f"data_key_file {path} is mode {mode:04o}; make it 0600 (chmod 600 {path})"
        )
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise RelayError(f"data_key_file {path} does not hold 32 bytes, hex-encoded")
    return key


def request_mac(key: bytes, req: JobRequest) -> str:
    """Keyed fingerprint of a request (detects idempotency-key reuse without storing data)."""
    body = json.dumps(
        [req.policy_id, req.model, req.model_version, req.record_id, req.features, req.salt],
        separators=(",", ":"),
    )
    return hmac.new(key, REQUEST_TAG + body.encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A key's public fingerprint (HMAC of a fixed tag): equal keys, equal fingerprints."""
    return hmac.new(key, b"zkcare/store-key-check/v1", hashlib.sha256).hexdigest()[:32]


class Relay:
    """One relay instance: store, prover worker, submitter; used by the API and the CLI."""

    def __init__(
        self,
        settings: RelaySettings,
        *,
        keys: RelayKeys | None = None,
        worker: ProverWorker | None = None,
        models: dict[tuple[str, int], ServedModel] | None = None,
        benchmark: PrivateBenchmark | None = None,
    ) -> None:
        """``benchmark``: the ``[evaluation]`` circuit, when already resolved (tests)."""
        self.settings = settings
        self.keys = keys or load_keys(settings)
        self.models = models or resolve_models(settings.models)
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.data_dir.chmod(0o700)
        data_key = load_data_key(settings)
        self.sealer = Sealer(data_key)
        #: This instance's id in the store (stable across restarts: kept in ``data_dir``).
        self.instance_id = stable_instance_id(settings.data_dir)
        self.store: JobStore = open_store(
            settings.db_path,
            settings.store_dsn_value,
            instance_id=self.instance_id,
            pool_size=settings.store_pool_size,
        )
        if self.store.shared:
            try:
                self.store.check_keys(
                    {
                        "data_key": key_fingerprint(data_key),
                        "nullifier_secret": key_fingerprint(settings.nullifier_key),
                    }
                )
            except BaseException:
                self.store.close()
                raise
        self.metrics = RelayMetrics(self.store)
        self.rpc = RpcPool(
            settings.rpc_url_strings,
            timeout=settings.rpc_timeout_s,
            expected_chain_id=settings.chain_id,
        )
        self.settlement = SettlementClient(self.rpc, settings.settlement)
        #: The request path's own pool: short timeouts, so a handler never waits long.
        self.intake_rpc = RpcPool(
            settings.rpc_url_strings,
            timeout=settings.intake_timeout_s,
            expected_chain_id=settings.chain_id,
        )
        self.intake_settlement = SettlementClient(self.intake_rpc, settings.settlement)
        #: The health probe's view: last successful read (monotonic), and the last answer.
        self.probe_ok = False
        self.probe_at: float | None = None
        self.probe_error: str | None = None
        #: Several relays on one PostgreSQL store: only the lease holder submits.
        self.lease: LeaseKeeper | None = None
        lease_dsn = self._shared_store_dsn()
        if lease_dsn is not None:
            self.lease = LeaseKeeper(
                SubmitterLease(lease_dsn, ttl_s=settings.submitter_lease_ttl_s),
                renew_s=settings.submitter_lease_renew_s,
            )
        self.submitter = Submitter(
            self.store,
            self.rpc,
            self.settlement,
            self.keys.hospital,
            self.keys.submitter,
            SubmitterConfig(
                confirmations=settings.confirmations,
                stuck_timeout_s=settings.stuck_timeout_s,
                fee_bump_percent=settings.fee_bump_percent,
                max_replacements=settings.max_replacements,
                max_fee_wei=gwei(settings.max_fee_gwei),
                priority_fee_wei=gwei(settings.priority_fee_gwei),
                gas_limit_multiplier=settings.gas_limit_multiplier,
                attestation_ttl_s=settings.attestation_ttl_s,
                poll_interval_s=settings.poll_interval_s,
                batch_max_size=settings.batch_max_size,
                batch_max_wait_s=settings.batch_max_wait_s,
            ),
            self.metrics,
            fence=self.lease.fence if self.lease is not None else None,
        )
        if self.lease is not None:
            self.lease.on_term = lambda _epoch: self.submitter.request_reconcile()
        self.rpc.on_failover = self.submitter.mark_failover
        self.metrics.chain_up.set_function(
            lambda: float(self.chain_reachable() and self.submitter.chain_ok)
        )
        self.evaluations: Evaluations | None = None
        if settings.evaluation is not None:
            from prover.relay.evaluations import Evaluations, resolve_benchmark

            self.evaluations = Evaluations(
                settings.evaluation,
                benchmark or resolve_benchmark(settings.evaluation),
                rpc=self.rpc,
                submitter=self.submitter,
                account=self.keys.submitter,
                sealer=self.sealer,
                root=settings.data_dir / "evaluations",
                prove_threads=settings.prove_threads,
                check_rpc=self.intake_rpc,
            )
        self._worker = worker
        self._owns_worker = worker is None
        self.dispatcher: Dispatcher | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._policy_cache: dict[int, float] = {}
        self._product_cache: dict[int, tuple[float, ProductInfo]] = {}
        self._lock_file: IO[str] | None = None
        self._housekeeping_wake = threading.Event()
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def worker(self) -> ProverWorker:
        """The prover backend (a local process pool unless one was injected)."""
        if self._worker is None and self.settings.engine is not None:  # engine hook (issue 11)
            from prover.relay.engine import EngineProverWorker

            self._worker = EngineProverWorker(
                self.settings.engine, {m.ref.key: m.ref for m in self.models.values()}
            )
        if self._worker is None:
            self._worker = LocalProverPool(
                {m.ref.key: m.ref for m in self.models.values()},
                self.settings.workers,
                self.settings.data_dir / "work",
                self.settings.prove_threads,
            )
        return self._worker

    def start(self, *, process: bool = True) -> None:
        """Recover unfinished jobs and start the dispatcher and submitter threads.

        With ``process=False`` only the API side runs (jobs stay queued): used by tests.
        """
        self.lock_data_dir()
        self.probe()
        self._threads = [threading.Thread(target=self._probe_loop, name="chain-probe", daemon=True)]
        if self.store.shared:
            self.store.heartbeat()  # this instance is alive before it takes any job back
        requeued = self.store.requeue_proving("relay restarted while proving")
        counts = self.store.counts()
        unfinished = sum(n for state, n in counts.items() if not state.final)
        log.info(
            "relay starting: store %s, hospital %s, submitter %s, %d unfinished jobs "
            "(%d re-queued)",
            self.store.describe(),
            self.keys.hospital.address,
            self.keys.submitter.address,
            unfinished,
            requeued,
        )
        if process:
            worker = self.worker
            if self._owns_worker and isinstance(worker, LocalProverPool):
                worker.warm_up()  # spawn the provers now, not on the first job
            self.dispatcher = Dispatcher(
                self.store,
                self.sealer,
                worker,
                self.metrics,
                {key: m.ref.key for key, m in self.models.items()},
                self.settings.max_prove_attempts,
                on_proved=self.submitter.wake,
            )
            self._threads += [
                threading.Thread(
                    target=self.dispatcher.run, args=(self._stop,), name="dispatcher", daemon=True
                ),
                self._submitter_thread(),
                threading.Thread(target=self._housekeeping, name="held-and-prune", daemon=True),
            ]
            if self.lease is not None:
                self.lease.lease.ensure_schema()
                self._threads.append(
                    threading.Thread(
                        target=self.lease.run,
                        args=(self._stop,),
                        name="submitter-lease",
                        daemon=True,
                    )
                )
            if self.evaluations is not None:
                self.evaluations.start(self._stop)
        for thread in self._threads:
            thread.start()
        self.started = True

    def _shared_store_dsn(self) -> str | None:
        """The DSN of a store that other relay instances share (PostgreSQL), else None."""
        return self.settings.store_dsn_value

    def _submitter_thread(self) -> threading.Thread:
        """The submitter loop: always on SQLite; with a shared store only while this instance
        holds the lease (each term starts with a reconcile), next to the thread renewing it."""
        if self.lease is None:
            return threading.Thread(
                target=self.submitter.run, args=(self._stop,), name="submitter", daemon=True
            )
        return threading.Thread(
            target=self.lease.run_submitter,
            args=(self._stop, self.submitter.run),
            name="submitter",
            daemon=True,
        )

    def lock_data_dir(self) -> None:
        """One relay instance per data directory (its SQLite store, its work files, its
        instance id); several instances share jobs through one ``store_dsn``, each with its own
        ``data_dir``. Idempotent; :meth:`start` calls it."""
        if self._lock_file is not None:
            return
        path = self.settings.data_dir / "relay.lock"
        handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            hint = (
                "give each instance on the shared store its own data_dir"
                if self.settings.store_dsn is not None
                else "a second instance needs its own data_dir and a shared store_dsn"
            )
            raise RelayError(
                f"another relay is running with data_dir {self.settings.data_dir} ({hint})"
            ) from None
        self._lock_file = handle

    def stop(self) -> None:
        """Stop the threads (unfinished jobs resume at the next start) and close the store."""
        self._stop.set()
        self._housekeeping_wake.set()
        self.submitter.wake.set()
        if self.dispatcher is not None:
            self.dispatcher.wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.evaluations is not None:
            self.evaluations.close()
        if self._owns_worker and self._worker is not None:
            self._worker.close()
        self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None
        self.started = False
        log.info("relay stopped")

    # ------------------------------------------------------------------ intake

    def model(self, name: str, version: int) -> ServedModel:
        """The configured model version, or :class:`UnknownModel`."""
        found = self.models.get((name, version))
        if found is None:
            known = [f"{n} v{v}" for n, v in sorted(self.models)]
            raise UnknownModel(name, version, known)
        return found

    @property
    def provers(self) -> int:
        """Proofs that run at once (the configured count until the backend exists)."""
        return self._worker.parallelism if self._worker is not None else self.settings.workers

    def retry_after(self) -> int:
        """Seconds until the queue has room, estimated from recent proving times."""
        stats = self.dispatcher
        per_proof = stats.busy_seconds / stats.proved if stats and stats.proved else 1.0
        return max(1, min(300, math.ceil(self.settings.max_queue * per_proof / self.provers)))

    def check_policy(self, policy_id: int, model: ServedModel) -> bool:
        """Refuse a policy the chain says cannot be claimed with ``model``; False when it could
        not be checked (the chain unreachable within ``intake_timeout_s``): the job is held.

        A policy checked within ``policy_cache_s`` is not read again. While the health probe
        finds the chain unreachable, the chain is not asked at all.
        """
        cached = self._policy_cache.get(policy_id)
        if cached is not None and cached > time.monotonic():
            return True
        if not self.probe_ok:
            log.warning("policy %d not checked: chain unreachable; the job is held", policy_id)
            return False
        try:
            self._check_policy(self.intake_settlement, policy_id, model)
        except ChainUnavailable:
            log.warning("policy %d not checked: chain unreachable; the job is held", policy_id)
            return False
        return True

    def _check_policy(
        self, settlement: SettlementClient, policy_id: int, model: ServedModel
    ) -> None:
        """Read the policy and its product (:class:`PolicyRejected`, :class:`ChainUnavailable`)."""
        policy = settlement.policy(policy_id)
        if policy.holder == ZERO_ADDRESS:
            raise PolicyRejected(
                policy_id, f"no such policy on ClaimSettlement {settlement.address}"
            )
        if policy.reserved == 0:
            raise PolicyRejected(policy_id, "its coverage is exhausted or released")
        if policy.expiry < time.time():
            raise PolicyRejected(policy_id, f"expired at {policy.expiry} (unix time)")
        product = self._product(settlement, policy.product_id)
        if product.model_id != model.model_id or product.version != model.config.version:
            raise PolicyRejected(
                policy_id,
                f"its product {policy.product_id} is for model 0x{product.model_id.hex()} "
                f"version {product.version}, not {model.config.name} "
                f"(0x{model.model_id.hex()}) version {model.config.version}",
            )
        self._policy_cache[policy_id] = time.monotonic() + self.settings.policy_cache_s

    def _product(self, settlement: SettlementClient, product_id: int) -> ProductInfo:
        """A product record, cached like policies (many policies share one product)."""
        cached = self._product_cache.get(product_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        product = settlement.product(product_id)
        self._product_cache[product_id] = (
            time.monotonic() + self.settings.policy_cache_s,
            product,
        )
        return product

    def submit(self, req: JobRequest, client_id: str | None = None) -> tuple[Job, bool]:
        """Validate and queue (or hold) ``client_id``'s claim job; ``(job, created)``.

        Raises UnknownModel, InvalidPatientRecord, PolicyRejected (all 4xx),
        IdempotencyConflict or DuplicateRecord (409) or QueueFull (429).
        """
        from prover.zk.commitment import check_salt, new_salt

        mac = request_mac(self.settings.nullifier_key, req)
        existing = self.store.find_by_key(req.idempotency_key)
        if existing is not None and existing.request_mac == mac and existing.client_id == client_id:
            return existing, False
        model = self.model(req.model, req.model_version)
        model.check_record(req.features)
        checked = self.check_policy(req.policy_id, model)
        job_id = uuid.uuid4().hex
        limbs = model.card.salt_limbs
        try:
            salt = check_salt(req.salt, limbs) if req.salt is not None else new_salt(limbs)
        except InvalidSalt as exc:
            raise InvalidSalt(f"model {req.model} v{req.model_version}: {exc.reason}") from None
        sealed = self.sealer.seal(job_id, req.features, salt)
        del salt
        new = NewJob(
            id=job_id,
            idempotency_key=req.idempotency_key,
            request_mac=mac,
            policy_id=req.policy_id,
            model=req.model,
            model_version=req.model_version,
            record_nullifier=record_nullifier(self.settings.nullifier_key, req.record_id),
            sealed_input=sealed,
            client_id=client_id,
        )
        job, created = self.store.create_job(
            new, self.settings.max_queue, retry_after=self.retry_after(), held=not checked
        )
        if created:
            log.info(
                "job %s: %s (policy %d, %s)", job.id, job.state, job.policy_id, model.config.key
            )
            if self.dispatcher is not None and job.state == JobState.QUEUED:
                self.dispatcher.wake.set()
            if job.state == JobState.HELD:
                self._housekeeping_wake.set()
        return job, created

    # ------------------------------------------------------------------ background

    def probe(self) -> bool:
        """One health probe: the block number within ``intake_timeout_s``."""
        try:
            self.intake_rpc.call(lambda w3: w3.eth.block_number)
        except ChainUnavailable as exc:
            if self.probe_ok:
                log.warning("chain probe failed: %s", exc)
            self.probe_ok = False
            self.probe_error = str(exc)[:300]
            return False
        self.probe_at = time.monotonic()
        self.probe_ok = True
        self.probe_error = None
        return True

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            self.probe()

    def chain_reachable(self) -> bool:
        """The probe's latest answer, and not older than one poll interval (plus its timeout)."""
        if not self.probe_ok or self.probe_at is None:
            return False
        stale = self.settings.poll_interval_s + 2 * self.settings.intake_timeout_s + 0.5
        return time.monotonic() - self.probe_at <= stale

    def release_held(self) -> int:
        """Check the policies of held jobs: queue them, or fail them with the chain's reason.
        Stops at the first chain error (the jobs stay held); how many were released."""
        released = 0
        for job in self.store.list_jobs([JobState.HELD], limit=64):
            served = self.models.get((job.model, job.model_version))
            try:
                if served is None:
                    raise PolicyRejected(job.policy_id, f"model {job.model} is no longer served")
                self._check_policy(self.settlement, job.policy_id, served)
            except ChainUnavailable:
                return released
            except PolicyRejected as exc:
                try:
                    self.store.transition(
                        job.id, JobState.HELD, JobState.FAILED, reason=str(exc), sealed_input=None
                    )
                except InvalidTransition:
                    continue
                log.info("job %s: held -> failed: %s", job.id, exc)
            else:
                try:
                    self.store.transition(
                        job.id, JobState.HELD, JobState.QUEUED, detail="policy checked"
                    )
                except InvalidTransition:
                    continue
                log.info("job %s: held -> queued (policy %d checked)", job.id, job.policy_id)
                if self.dispatcher is not None:
                    self.dispatcher.wake.set()
            released += 1
        return released

    def prune(self) -> int:
        """Delete jobs finished more than ``job_retention_s`` ago (audit rows stay)."""
        pruned = self.store.prune_final(time.time() - self.settings.job_retention_s)
        if pruned:
            log.info(
                "pruned %d finished jobs older than %g s", pruned, self.settings.job_retention_s
            )
        return pruned

    def _housekeeping(self) -> None:
        """Held jobs every poll interval (at once after a new one), pruning now and then."""
        next_prune = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + self.settings.prune_interval_s
                if self.probe_ok and self.store.counts()[JobState.HELD]:
                    self.release_held()
            except Exception as exc:  # keep the loop alive; logged, retried next pass
                log.error("housekeeping failed: %s: %s", type(exc).__name__, str(exc)[:200])
            self._housekeeping_wake.wait(self.settings.poll_interval_s)
            self._housekeeping_wake.clear()

    # ------------------------------------------------------------------ status

    def health(self) -> Health:
        """The relay's health summary."""
        sub = self.submitter
        counts = self.store.counts()
        reachable = self.chain_reachable()
        active = self.lease.holding if self.lease is not None else True
        # a standby's submitter does not run: the probe alone tells whether the chain is up
        sub_ok = sub.chain_ok or not active
        ok = reachable and sub_ok and (sub.paused_reason is None or not active)
        return Health(
            status="ok" if ok else "degraded",
            chain=ChainHealth(
                reachable=reachable and sub_ok,
                endpoint=self.rpc.current,
                chain_id=sub.chain_id,
                last_error=sub.last_error or self.probe_error,
            ),
            submitter=self.keys.submitter.address,
            active_submitter=active,
            submitter_epoch=self.lease.epoch if self.lease is not None else None,
            hospital=self.keys.hospital.address,
            paused=sub.paused_reason if active else None,
            workers=self.provers,
            queue_limit=self.settings.max_queue,
            jobs={state.value: n for state, n in counts.items()},
        )

    def wait_idle(self, timeout: float, poll: float = 0.1) -> bool:
        """Block until no job is unfinished (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.store.counts()
            if all(n == 0 for state, n in counts.items() if not state.final):
                return True
            time.sleep(poll)
        return False
