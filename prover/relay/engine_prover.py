"""A prover host: ``python -m prover.relay.engine prover --dsn … --bundles DIR --key FILE``.

At start the prover hashes every bundle under ``--bundles`` (:func:`bundle_content_hash`) and
compares itself with what the relays published in ``zkcare_engine_bundles``: a bundle of a
served model whose content hash differs, or a key that is not the one the relays seal for, is
refused (one line, exit 2). It then loads the bundles it holds into a
:class:`~prover.relay.worker.LocalProverPool` (``--concurrency`` spawned processes, bundles
pinned in memory, the same ``prove_task`` as a local relay) and runs a Procrastinate worker on
the queues of those bundles only, sending a heartbeat every ``--heartbeat-s``.

Each task is opened here (the relay and the broker never see its plaintext), proved, and its
result (proof and public instances) written with ``INSERT … ON CONFLICT DO NOTHING`` followed
by ``NOTIFY``. A task whose sealed bundle hash this prover does not hold is refused: a failure
row (retried by the relay with a new task) and one log line. Patient values stay in this
process's memory and its pool's (scratch files are deleted after every proof).

Who may run it: a host with the DSN (a secret), the prover key file (0600) and the bundles.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from prover.exceptions import (
    BundleMismatch,
    EngineConfigError,
    EngineUnavailable,
    ProverFailed,
    SealedTaskError,
    ZkcareError,
)
from prover.relay.engine_common import (
    BUNDLES_TABLE,
    RESULTS_CHANNEL,
    RESULTS_TABLE,
    TASK_NAME,
    bundle_content_hash,
    ensure_schema,
    instances_json,
    open_task,
    queue_for,
    read_key_file,
    write_key_file,
)
from prover.relay.worker import LocalProverPool, ModelRef, ProveResult, ProveTask

log = logging.getLogger("zkcare.relay.engine.prover")


def held_bundles(root: Path) -> dict[str, tuple[str, Path]]:
    """``{content hash: (model name, path)}`` of every bundle directory under ``root``."""
    import json

    if not root.is_dir():
        raise EngineConfigError(f"--bundles {root} is not a directory")
    dirs = (
        [root]
        if (root / "manifest.json").is_file()
        else sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    )
    held: dict[str, tuple[str, Path]] = {}
    for path in dirs:
        name = str(json.loads((path / "manifest.json").read_text()).get("name", path.name))
        held[bundle_content_hash(path)] = (name, path)
    if not held:
        raise EngineConfigError(f"--bundles {root} holds no circuit bundle")
    return held


async def check_against_relays(
    dsn: str, held: dict[str, tuple[str, Path]], public_key: str
) -> dict[str, tuple[str, Path]]:
    """The held bundles to prove with: those the relays published (all held ones while no relay
    has published any). Other bundles in the folder (other models, older builds) are skipped
    with a log line. Refuses (one line) a model the relays serve only with another hash, and a
    key that is not the one the relays seal for."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT bundle_hash, model, public_key FROM {BUNDLES_TABLE}")
        published = await cur.fetchall()
    if not published:
        return held
    served = {h for h, _, _ in published}
    by_model: dict[str, set[str]] = {}
    for bundle_hash, model, _ in published:
        by_model.setdefault(model, set()).add(bundle_hash)
    usable = {h: entry for h, entry in held.items() if h in served}
    usable_models = {model for model, _ in usable.values()}
    for bundle_hash, (model, path) in held.items():
        if bundle_hash in served:
            continue
        if model in by_model and model not in usable_models:
            expected = ", ".join(sorted(h[:16] for h in by_model[model]))
            raise BundleMismatch(
                f"bundle {path.name} ({model}) has content hash {bundle_hash[:16]}…, "
                f"the relay serves {expected}…; refusing to prove with it"
            )
        log.info("skipping bundle %s (%s): no relay serves it", path.name, model)
    if not usable:
        models = ", ".join(sorted(by_model))
        raise EngineConfigError(
            f"none of the bundles held here is one the relays serve ({models}); give --bundles "
            "the bundle directories the relays were started with"
        )
    keys = {k for h, _, k in published if h in usable}
    if keys and keys != {public_key}:
        raise BundleMismatch(
            f"this prover's key (public {public_key[:16]}…) is not the key the relay seals "
            "tasks for; refusing to start"
        )
    return usable


class Prover:
    """One prover host's worker: opens tasks, proves them in its pool, writes results."""

    def __init__(
        self,
        dsn: str,
        held: dict[str, tuple[str, Path]],
        key_file: Path,
        concurrency: int,
        work_root: Path,
    ) -> None:
        self.dsn = dsn
        self.held = held
        self.key = read_key_file(key_file)
        self.public_key = bytes(self.key.public_key).hex()
        self.concurrency = concurrency
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        refs = {h: ModelRef(h, str(path)) for h, (_, path) in held.items()}
        self.pool = LocalProverPool(refs, workers=concurrency, work_root=work_root, prefetch=0)
        self._write_lock = asyncio.Lock()
        self._conn: Any = None

    async def prove(self, task_id: str, sealed: str) -> None:
        """The ``zkcare.prove`` task: open, prove, record the result."""
        try:
            payload = open_task(self.key, task_id, sealed)
        except SealedTaskError as exc:
            log.error("%s", exc)
            await self._record_failure(task_id, "", str(exc), permanent=False)
            return
        if payload.bundle_hash not in self.held:
            log.error(
                "task %s refused: bundle %s… is not held by prover %s",
                task_id,
                payload.bundle_hash[:16],
                self.name,
            )
            reason = f"bundle {payload.bundle_hash[:16]}… not held by prover {self.name}"
            await self._record_failure(task_id, payload.bundle_hash, reason, permanent=False)
            return
        task = ProveTask(payload.job_id, payload.bundle_hash, payload.features, payload.salt)
        del payload
        try:
            result = await asyncio.wrap_future(self.pool.submit(task))
        except ProverFailed as exc:
            await self._record_failure(task_id, task.model_key, exc.reason, exc.permanent)
            return
        except Exception as exc:  # a broken pool: replace it; the relay retries the job
            log.error("task %s: prover pool broke (%s); restarting it", task_id, type(exc).__name__)
            self.pool.restart()
            await self._record_failure(task_id, task.model_key, "prover process died", False)
            return
        await self._record(task_id, task.model_key, result)
        log.info("task %s: proved in %.2f s", task_id, result.seconds)

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return self._conn

    async def _write(self, sql: str, args: tuple[Any, ...], task_id: str) -> None:
        async with self._write_lock:
            conn = await self._connection()
            async with conn.transaction():
                cur = await conn.execute(sql, args)
                if cur.rowcount:  # first result for this task: tell the relays
                    await conn.execute("SELECT pg_notify(%s, %s)", (RESULTS_CHANNEL, task_id))

    async def _record(self, task_id: str, bundle_hash: str, result: ProveResult) -> None:
        await self._write(
            f"INSERT INTO {RESULTS_TABLE} (task_id, bundle_hash, ok, proof, instances, seconds,"
            " started_at, worker) VALUES (%s, %s, true, %s, %s::jsonb, %s, %s, %s)"
            " ON CONFLICT (task_id) DO NOTHING",
            (
                task_id,
                bundle_hash,
                result.proof,
                instances_json(result.instances),
                result.seconds,
                result.started_at,
                self.name,
            ),
            task_id,
        )

    async def _record_failure(
        self, task_id: str, bundle_hash: str, reason: str, permanent: bool
    ) -> None:
        await self._write(
            f"INSERT INTO {RESULTS_TABLE} (task_id, bundle_hash, ok, worker, reason, permanent)"
            " VALUES (%s, %s, false, %s, %s, %s) ON CONFLICT (task_id) DO NOTHING",
            (task_id, bundle_hash, self.name, reason[:500], permanent),
            task_id,
        )

    async def run(self, heartbeat_s: float, poll_s: float) -> None:
        """Run the Procrastinate worker on this prover's queues until SIGINT/SIGTERM."""
        import procrastinate

        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=self.dsn, min_size=1, max_size=4)
        )
        app.task(name=TASK_NAME, pass_context=False)(self.prove)
        queues = [queue_for(h) for h in self.held]
        async with app.open_async():
            log.info(
                "prover %s: %d bundle(s), %d process(es), queues %s",
                self.name,
                len(self.held),
                self.concurrency,
                ", ".join(queues),
            )
            print(f"prover {self.name} ready", file=sys.stderr, flush=True)
            await app.run_worker_async(
                queues=queues,
                name=self.name,
                concurrency=self.concurrency,
                update_heartbeat_interval=heartbeat_s,
                stalled_worker_timeout=max(3 * heartbeat_s, 1.0),
                fetch_job_polling_interval=poll_s,
                delete_jobs="successful",
            )
        if self._conn is not None:
            await self._conn.close()

    def close(self) -> None:
        """Stop the pool (and delete its scratch space)."""
        self.pool.close()


async def _serve(
    dsn: str, bundles: Path, key_file: Path, concurrency: int, heartbeat_s: float, poll_s: float
) -> None:
    held = held_bundles(bundles)
    try:
        await ensure_schema(dsn)
    except Exception as exc:
        raise EngineUnavailable(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from None
    public_key = bytes(read_key_file(key_file).public_key).hex()
    held = await check_against_relays(dsn, held, public_key)
    work_root = Path(tempfile.mkdtemp(prefix="zkcare-prover-")) / "work"
    prover = Prover(dsn, held, key_file, concurrency, work_root)
    try:
        prover.pool.warm_up()
        await prover.run(heartbeat_s, poll_s)
    finally:
        prover.close()


@click.group()
def cli() -> None:
    """Remote provers of the zkcare relay (Procrastinate on PostgreSQL)."""


@cli.command()
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
def keygen(key_file: Path) -> None:
    """Create a prover key file (0600) and print its public key for the relay's [engine]."""
    try:
        click.echo(write_key_file(key_file))
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option(
    "--dsn",
    envvar="ZKCARE_ENGINE_DSN",
    show_envvar=True,
    required=True,
    help="the broker's PostgreSQL DSN (a secret: prefer the environment variable)",
)
@click.option(
    "--bundles",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="a bundle directory, or a directory of bundles",
)
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=os.cpu_count() or 1)
@click.option("--heartbeat-s", type=click.FloatRange(0.1, 3600), default=10.0)
@click.option("--poll-s", type=click.FloatRange(0.1, 3600), default=2.0, help="queue poll")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO"
)
def prover(
    dsn: str,
    bundles: Path,
    key_file: Path,
    concurrency: int,
    heartbeat_s: float,
    poll_s: float,
    log_level: str,
) -> None:
    """Prove tasks of the bundles under --bundles until interrupted."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Procrastinate logs each job's arguments (sealed, but long) at INFO
    quiet = logging.DEBUG if log_level == "DEBUG" else logging.WARNING
    logging.getLogger("procrastinate").setLevel(quiet)
    try:
        asyncio.run(_serve(dsn, bundles, key_file, concurrency, heartbeat_s, poll_s))
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
