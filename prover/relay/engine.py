"""Provers on other hosts: a :class:`ProverWorker` on Procrastinate (PostgreSQL task queue).

Why Procrastinate: the relay already needs PostgreSQL to scale out, and Procrastinate is a task
queue in that same database (``SELECT … FOR UPDATE SKIP LOCKED`` row locks, LISTEN/NOTIFY for
new jobs, worker heartbeats and a stalled-job API), so the engine adds no broker to operate,
back up or secure. Ray, Dask or Celery would each add a service and a second source of truth.

Relay side (:class:`EngineProverWorker`): each :class:`ProveTask` becomes one Procrastinate job
``zkcare.prove`` on the queue of its bundle's content hash (:func:`queue_for`); its only
arguments are a random task id and the payload sealed to the provers' public key
(:mod:`prover.relay.engine_common`). A prover writes its result (proof and public instances;
nothing private) into ``zkcare_engine_results`` with ``INSERT … ON CONFLICT DO NOTHING`` and
NOTIFYs the task id; the relay listens (and polls, in case a notification is lost) and resolves
the task's future. The first result wins; a late or duplicate one finds no pending task and
changes nothing, and the relay's job store settles each job once whatever arrives. A result is
accepted only if its commitment instance is the commitment of the task's own record and salt
(computed here), so a result row forged or copied into the broker cannot pay another claim.
Every ``sweep_interval_s`` the relay asks Procrastinate for jobs whose prover stopped sending
heartbeats (``JobManager.get_stalled_jobs``) and hands them back (``retry_job``): a prover
killed mid-proof has its task run by another.

Prover side: ``python -m prover.relay.engine prover`` (:mod:`prover.relay.engine_prover`).

Who may use it: anyone who can write to the broker's tables can queue work and write results,
so the DSN is a secret of the relay and prover hosts (give provers a PostgreSQL role limited to
Procrastinate's tables and ``zkcare_engine_results``); only holders of the prover key file can
open a task; a result is checked against the task before the relay uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from prover.exceptions import (
    EngineUnavailable,
    InvalidPatientRecord,
    ProverFailed,
    ZkcareError,
)
from prover.relay.engine_common import (
    BUNDLES_TABLE,
    RESULTS_CHANNEL,
    RESULTS_TABLE,
    TASK_NAME,
    TaskPayload,
    bundle_content_hash,
    ensure_schema,
    parse_public_key,
    queue_for,
    seal_task,
)
from prover.relay.worker import ModelRef, ProveResult, ProveTask

if TYPE_CHECKING:
    import procrastinate
    import psycopg

    from prover.models.build import LoadedModel

log = logging.getLogger("zkcare.relay.engine")


class EngineSettings(BaseModel):
    """``[engine]``: prove on remote hosts through Procrastinate instead of a local pool."""

    model_config = ConfigDict(extra="forbid")

    dsn: SecretStr = Field(description="libpq DSN of the broker's PostgreSQL (a secret)")
    public_key: str = Field(description="the provers' X25519 public key, 64 hex characters")
    parallelism: int = Field(default=2, ge=1, le=4096, description="proofs running at once")
    capacity: int = Field(default=8, ge=1, le=100_000, description="tasks in flight at most")
    stalled_after_s: float = Field(
        default=30.0, gt=0, description="a prover silent this long has its tasks retried"
    )
    sweep_interval_s: float = Field(default=5.0, gt=0, description="stalled-task check period")
    poll_interval_s: float = Field(default=1.0, gt=0, description="result poll (besides NOTIFY)")
    result_timeout_s: float = Field(
        default=900.0, gt=0, description="a task without a result this long fails (retried)"
    )
    results_retention_s: float = Field(
        default=86_400.0, gt=0, description="results (public data) are deleted after this"
    )

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        parse_public_key(value)
        return value.strip().removeprefix("0x").lower()


@dataclass
class _Pending:
    task: ProveTask
    future: Future[ProveResult]
    bundle_hash: str
    commitment: int
    deadline: float
    job: int | None = None  # Procrastinate job id


@dataclass(frozen=True)
class _Served:
    bundle_hash: str
    loaded: LoadedModel


class EngineProverWorker:
    """A :class:`~prover.relay.worker.ProverWorker` whose provers run wherever the bundles are."""

    def __init__(self, settings: EngineSettings, models: Mapping[str, ModelRef]) -> None:
        from prover.models.build import LoadedModel
        from prover.zk.circuit import load_bundle

        self.settings = settings
        self._key = parse_public_key(settings.public_key)
        self._models = {
            key: _Served(
                bundle_content_hash(Path(ref.bundle_path)),
                LoadedModel.open(load_bundle(Path(ref.bundle_path))),
            )
            for key, ref in models.items()
        }
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="engine", daemon=True)
        self._thread.start()
        self._app: procrastinate.App | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.retried = 0  # stalled tasks handed back (for tests and metrics)
        try:
            self._call(self._open(), timeout=60)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            raise

    # ------------------------------------------------------------------ ProverWorker

    @property
    def capacity(self) -> int:
        """Tasks queued or running at the provers."""
        return self.settings.capacity

    @property
    def parallelism(self) -> int:
        """Proofs the configured provers run at once."""
        return self.settings.parallelism

    @property
    def bundle_hashes(self) -> dict[str, str]:
        """Content hash of each served model's bundle, by model key."""
        return {key: m.bundle_hash for key, m in self._models.items()}

    def submit(self, task: ProveTask) -> Future[ProveResult]:
        """Seal ``task`` for the provers and defer it on its bundle's queue."""
        future: Future[ProveResult] = Future()
        served = self._models.get(task.model_key)
        if served is None:
            future.set_exception(
                ProverFailed(task.job_id, f"model {task.model_key} not served", True)
            )
            return future
        try:
            commitment = _expected_commitment(served.loaded, task)
        except InvalidPatientRecord as exc:  # names the feature, never a value
            future.set_exception(ProverFailed(task.job_id, str(exc), True))
            return future
        except ZkcareError:
            future.set_exception(ProverFailed(task.job_id, "invalid salt", True))
            return future
        task_id = uuid.uuid4().hex
        sealed = seal_task(
            self._key,
            TaskPayload(task_id, task.job_id, served.bundle_hash, task.features, task.salt),
        )
        pending = _Pending(
            task,
            future,
            served.bundle_hash,
            commitment,
            time.monotonic() + self.settings.result_timeout_s,
        )
        with self._lock:
            self._pending[task_id] = pending
        try:
            pending.job = self._call(self._defer(task_id, sealed, served.bundle_hash), timeout=30)
        except Exception as exc:
            with self._lock:
                self._pending.pop(task_id, None)
            raise EngineUnavailable(f"could not queue a task: {type(exc).__name__}") from None
        log.info(
            "job %s: task %s queued for bundle %s", task.job_id, task_id, served.bundle_hash[:12]
        )
        return future

    def restart(self) -> None:
        """Reopen the broker connections (pending tasks keep their futures)."""
        self._call(self._close_app(), timeout=30)
        self._call(self._open(), timeout=60)

    def close(self) -> None:
        """Cancel tasks not yet started, stop listening and close the connections."""
        try:
            self._call(self._shutdown(), timeout=30)
        except Exception as exc:  # closing must not raise
            log.warning("engine shutdown: %s", type(exc).__name__)
        with self._lock:
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(
                        ProverFailed(pending.task.job_id, "relay stopped", permanent=False)
                    )
            self._pending.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ event loop side

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _dsn(self) -> str:
        return self.settings.dsn.get_secret_value()

    async def _open(self) -> None:
        import procrastinate

        dsn = self._dsn()
        try:
            await ensure_schema(dsn)
            app = procrastinate.App(
                connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=4)
            )
            await app.open_async()
            await self._publish_bundles(dsn)
        except Exception as exc:
            raise EngineUnavailable(_pg_reason(exc)) from None
        self._app = app
        self._tasks = [
            asyncio.create_task(self._listen_results(dsn)),
            asyncio.create_task(self._sweep_stalled()),
        ]

    async def _publish_bundles(self, dsn: str) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for key, served in self._models.items():
                await conn.execute(
                    f"INSERT INTO {BUNDLES_TABLE} (bundle_hash, model, public_key)"
                    " VALUES (%s, %s, %s) ON CONFLICT (bundle_hash) DO UPDATE"
                    " SET public_key = EXCLUDED.public_key, published_at = now()",
                    (served.bundle_hash, served.loaded.card.name, self.settings.public_key),
                )
                log.info("engine: serving %s as bundle %s", key, served.bundle_hash[:12])

    async def _defer(self, task_id: str, sealed: str, bundle_hash: str) -> int:
        assert self._app is not None
        deferrer = self._app.configure_task(TASK_NAME, queue=queue_for(bundle_hash))
        job_id: int = await deferrer.defer_async(task_id=task_id, sealed=sealed)
        return job_id

    async def _listen_results(self, dsn: str) -> None:
        """Collect results on NOTIFY, and every ``poll_interval_s`` in any case."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {RESULTS_CHANNEL}")
                    while True:
                        await self._collect(conn)
                        gen = conn.notifies(timeout=self.settings.poll_interval_s, stop_after=1)
                        async for _ in gen:
                            pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("engine: result listener: %s; reconnecting", _pg_reason(exc))
                await asyncio.sleep(1.0)

    async def _collect(self, conn: psycopg.AsyncConnection[Any]) -> None:
        with self._lock:
            wanted = list(self._pending)
        if not wanted:
            return
        cur = await conn.execute(
            f"SELECT task_id, bundle_hash, ok, proof, instances, seconds, started_at, worker,"
            f" reason, permanent FROM {RESULTS_TABLE} WHERE task_id = ANY(%s)",
            (wanted,),
        )
        for row in await cur.fetchall():
            with self._lock:
                pending = self._pending.pop(row[0], None)
            if pending is not None and not pending.future.done():
                self._resolve(pending, row)
        now = time.monotonic()
        with self._lock:
            late = [t for t, p in self._pending.items() if p.deadline < now]
            expired = [self._pending.pop(t) for t in late]
        for pending in expired:
            pending.future.set_exception(
                ProverFailed(pending.task.job_id, "no prover result in time", permanent=False)
            )
            if pending.job is not None and self._app is not None:
                await self._app.job_manager.cancel_job_by_id_async(pending.job, abort=True)

    def _resolve(self, pending: _Pending, row: tuple[Any, ...]) -> None:
        _, bundle_hash, ok, proof, instances, seconds, started_at, worker, reason, permanent = row
        job_id = pending.task.job_id
        if not ok:
            pending.future.set_exception(ProverFailed(job_id, str(reason), bool(permanent)))
            return
        try:
            result = self._check(pending, bundle_hash, bytes(proof), instances)
        except ValueError as exc:
            log.warning("job %s: result from %s refused: %s", job_id, worker, exc)
            pending.future.set_exception(ProverFailed(job_id, str(exc), permanent=False))
            return
        pending.future.set_result(
            ProveResult(
                job_id=job_id,
                proof=result[0],
                instances=result[1],
                commitment=pending.commitment,
                outputs=result[2],
                seconds=float(seconds or 0.0),
                worker=str(worker),
                started_at=float(started_at or 0.0),
            )
        )

    def _check(
        self, pending: _Pending, bundle_hash: str, proof: bytes, raw: Any
    ) -> tuple[bytes, tuple[int, ...], tuple[float, ...]]:
        """The result's instances, checked against the task's layout and commitment."""
        from prover.zk.fields import fixed_to_float

        if bundle_hash != pending.bundle_hash:
            raise ValueError("result was proved with another bundle")
        values = json.loads(raw) if isinstance(raw, str) else raw
        instances = tuple(int(v) for v in values)
        layout = self._models[pending.task.model_key].loaded.card.instance_layout
        if (
            len(instances) != layout.count
            or layout.commitment_of(proof, instances) != pending.commitment
        ):
            raise ValueError("result's commitment is not this task's record")
        outputs = tuple(
            fixed_to_float(instances[i], layout.output_scale) for i in layout.output_indexes
        )
        return proof, instances, outputs

    async def _sweep_stalled(self) -> None:
        """Hand back tasks whose prover stopped sending heartbeats (Procrastinate's API)."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.retry_stalled()
                await self.prune_results()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("engine: stalled-task sweep: %s", _pg_reason(exc))

    async def retry_stalled(self) -> int:
        """Retry every ``zkcare.prove`` job of a prover silent for ``stalled_after_s``."""
        assert self._app is not None
        manager = self._app.job_manager
        stalled = await manager.get_stalled_jobs(
            task_name=TASK_NAME, seconds_since_heartbeat=self.settings.stalled_after_s
        )
        count = 0
        for job in stalled:
            await manager.retry_job(job)
            count += 1
            log.warning("engine: task job %s: its prover went silent; retried", job.id)
        self.retried += count
        return count

    async def prune_results(self) -> int:
        """Delete results older than ``results_retention_s`` (a task that late is long failed)."""
        assert self._app is not None
        rows = await self._app.connector.execute_query_all_async(
            f"DELETE FROM {RESULTS_TABLE} WHERE created_at < now() - make_interval(secs => "
            "%(age)s) RETURNING task_id",
            age=self.settings.results_retention_s,
        )
        return len(rows)

    async def _close_app(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except BaseException:  # noqa: B036 - cancelled on purpose
                pass
        self._tasks = []
        if self._app is not None:
            await self._app.close_async()
            self._app = None

    async def _shutdown(self) -> None:
        if self._app is not None:
            with self._lock:
                jobs = [p.job for p in self._pending.values() if p.job is not None]
            for job in jobs:  # not yet started: nobody should prove them now
                await self._app.job_manager.cancel_job_by_id_async(job)
        await self._close_app()


def _expected_commitment(model: LoadedModel, task: ProveTask) -> int:
    """The commitment a proof of ``task`` must expose (its record and salt: KZG or Poseidon)."""
    from prover.zk.commitment import check_salt, commit_input

    values = model.card.check_record(task.features)
    z = model.preprocessor.transform(values)
    return commit_input(model.bundle, z, check_salt(task.salt, model.card.salt_limbs))


def _pg_reason(exc: BaseException) -> str:
    """One line about a database error (never the DSN: it may hold a password)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """``python -m prover.relay.engine``: the prover command and key generation."""
    from prover.relay.engine_prover import cli

    try:
        cli.main(args=argv, prog_name="python -m prover.relay.engine", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
