"""Prover-relay benchmark: submission-to-payout latency, 50-job throughput, prover utilization,
peak memory — an in-process relay (HTTP API, process pool, submitter) against anvil.

``run()`` returns a JSON-able dict, ``table()`` renders it; ``python -m bench.relay`` does both.
"""

from __future__ import annotations

import os
import resource
import secrets
import statistics
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from eth_account import Account

from prover.anvil import Anvil
from prover.models.breast_cancer import build_diagnostic_bundle, load_dataset
from prover.relay.auth import Scope
from prover.relay.devchain import deploy_dev_chain
from prover.relay.keys import RelayKeys
from prover.relay.service import Relay, resolve_models
from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings
from prover.relay.states import JobState
from prover.relay.worker import LocalProverPool, ProveResult, ProveTask

BLOCK_TIME_S = 0.5
POLL_S = 0.2
LATENCY_JOBS = 5
THROUGHPUT_JOBS = 50
BASELINE_PROOFS = 20
LATENCY_TARGET_S = 2.0
BUSY_TARGET = 0.90
_CLK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, stat: str = "stat") -> float:
    """utime + stime of a process (or of a thread: ``stat="task/<tid>/stat"``), from /proc."""
    fields = Path(f"/proc/{pid}/{stat}").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_pids(pool: LocalProverPool) -> list[int]:
    processes = getattr(pool._pool, "_processes", None) or {}
    return sorted(int(pid) for pid in processes)


def _jobs(chain: Any, n: int, start: int) -> list[dict[str, Any]]:
    ds = load_dataset()
    policies = chain.issue_policies(n)
    return [
        {
            "idempotency_key": f"bench-{start + i:06d}",
            "policy_id": policy,
            "model": "breast_cancer_lr",
            "model_version": 1,
            "record_id": f"bench-record-{start + i}",
            "features": [float(v) for v in ds.x_test[(start + i) % len(ds.x_test)]],
        }
        for i, policy in enumerate(policies)
    ]


class CpuSampler:
    """Samples the prover processes' CPU time every 100 ms (wall clock, seconds)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), sum(_cpu_seconds(p) for p in self.pids)))
            self._stop.wait(0.1)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> float:
        """CPU seconds at wall time ``t`` (linear interpolation)."""
        before = [s for s in self.samples if s[0] <= t] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= t] or self.samples[-1:]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)


class RecordingPool:
    """A :class:`ProverWorker` that passes everything to a pool and records proving spans."""

    def __init__(self, pool: LocalProverPool) -> None:
        self.pool = pool
        self.spans: dict[str, tuple[float, float]] = {}

    @property
    def capacity(self) -> int:
        return self.pool.capacity

    @property
    def parallelism(self) -> int:
        return self.pool.parallelism

    def submit(self, task: ProveTask) -> Future[ProveResult]:
        fut = self.pool.submit(task)
        fut.add_done_callback(self._record)
        return fut

    def _record(self, fut: Future[ProveResult]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            r = fut.result()
            self.spans[r.job_id] = (r.started_at, r.started_at + r.seconds)

    def restart(self) -> None:
        self.pool.restart()

    def close(self) -> None:
        self.pool.close()


def _busy_fraction(
    spans: list[tuple[float, float]], workers: int, cpu: CpuSampler
) -> dict[str, float]:
    """Prover-slot occupancy and prover CPU while jobs were waiting for a prover.

    The window runs from the first proof's start to the last proof's start: until then a job
    was always waiting, so every prover had work.
    """
    first = min(s for s, _ in spans)
    last_start = max(s for s, _ in spans)
    window = last_start - first
    occupied = sum(max(0.0, min(e, last_start) - max(s, first)) for s, e in spans)
    cpu_used = cpu.at(last_start) - cpu.at(first)
    return {
        "queue_full_window_s": round(window, 2),
        "prover_slots_busy": round(occupied / (workers * window), 3) if window > 0 else 0.0,
        "prover_cpu_busy": round(cpu_used / (workers * window), 3) if window > 0 else 0.0,
    }


def _proving_alone(pool: LocalProverPool, model_key: str) -> dict[str, float]:
    """Baseline: the same pool proving ``BASELINE_PROOFS`` records back to back, no relay."""
    from prover.zk.commitment import KZG_SALT_LIMBS, new_salt

    ds = load_dataset()
    tasks = [
        ProveTask(
            f"baseline-{i}",
            model_key,
            tuple(map(float, ds.x_test[i])),
            tuple(new_salt(KZG_SALT_LIMBS)),
        )
        for i in range(BASELINE_PROOFS)
    ]
    t0 = time.perf_counter()
    results = [f.result() for f in [pool.submit(t) for t in tasks]]
    elapsed = time.perf_counter() - t0
    return {
        "proofs": BASELINE_PROOFS,
        "elapsed_s": round(elapsed, 2),
        "jobs_per_s": round(BASELINE_PROOFS / elapsed, 2),
        "prove_s_median": round(statistics.median(r.seconds for r in results), 3),
    }


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of the relay's dispatcher and submitter threads (Linux); the rest of the
    process is the HTTP API, the benchmark's client and short-lived threads."""
    return {
        t.name: _cpu_seconds(os.getpid(), f"task/{t.native_id}/stat")
        for t in threading.enumerate()
        if t.name in ("dispatcher", "submitter")
    }


def run() -> dict[str, Any]:
    """Measure latency (one job at a time) and throughput (50 jobs at once)."""
    from fastapi.testclient import TestClient

    from prover.relay.api import create_app

    bundle = build_diagnostic_bundle()
    models = resolve_models([ModelConfig(bundle=bundle.path)])
    workers = os.cpu_count() or 1
    hospital, submitter = Account.create(), Account.create()
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="zkcare-relay-bench-") as tmp,
        Anvil(block_time=BLOCK_TIME_S) as node,
    ):
        chain = deploy_dev_chain(node.url, bundle, hospital.address)
        chain.set_balance(submitter.address, 10**20)
        pool = LocalProverPool(
            {m.ref.key: m.ref for m in models.values()}, workers, Path(tmp) / "work"
        )
        recorder = RecordingPool(pool)
        started = time.perf_counter()
        pool.warm_up()
        warm_up_s = time.perf_counter() - started
        baseline = _proving_alone(pool, next(iter(models.values())).ref.key)
        settings = RelaySettings.model_validate(
            {
                "rpc_urls": [node.url],
                "settlement": chain.settlement.address,
                "hospital_key": KeyConfig(keystore=Path(tmp) / "unused"),
                "submitter_key": KeyConfig(keystore=Path(tmp) / "unused"),
                "nullifier_secret": secrets.token_hex(32),
                "data_key": secrets.token_hex(32),
                "data_dir": Path(tmp) / "relay",
                "workers": workers,
                "confirmations": 1,
                "poll_interval_s": POLL_S,
                "max_queue": 1000,
            }
        )
        relay = Relay(settings, keys=RelayKeys(hospital, submitter), worker=recorder, models=models)
        relay.start()
        _client, token = relay.store.create_client("bench", [Scope.SUBMIT, Scope.READ])
        client = TestClient(
            create_app(relay, manage_relay=False), headers={"Authorization": f"Bearer {token}"}
        )
        try:
            # 1. latency: one job at a time, HTTP 202 -> paid/denied on-chain
            latencies = []
            for body in _jobs(chain, LATENCY_JOBS, 0):
                t0 = time.perf_counter()
                job_id = client.post("/v1/jobs", json=body).json()["job_id"]
                while not relay.store.get(job_id).state.final:
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - t0)
            # 2. throughput: 50 jobs at once
            bodies = _jobs(chain, THROUGHPUT_JOBS, LATENCY_JOBS)
            cpu_before = {pid: _cpu_seconds(pid) for pid in _worker_pids(pool)}
            anvil_pid = node._proc.pid if node._proc else os.getpid()
            anvil_before, relay_before = _cpu_seconds(anvil_pid), _cpu_seconds(os.getpid())
            threads_before = _thread_cpu()
            with CpuSampler(_worker_pids(pool)) as sampler:
                t0 = time.perf_counter()
                ids = [client.post("/v1/jobs", json=b).json()["job_id"] for b in bodies]
                submit_s = time.perf_counter() - t0
                if not relay.wait_idle(timeout=600, poll=0.1):
                    raise RuntimeError(f"jobs did not finish: {relay.store.counts()}")
                elapsed = time.perf_counter() - t0
            threads = {
                k: round((v - threads_before.get(k, 0.0)) / (workers * elapsed), 3)
                for k, v in _thread_cpu().items()
            }
            worker_cpu = sum(_cpu_seconds(p) - cpu_before.get(p, 0.0) for p in _worker_pids(pool))
            anvil_cpu = _cpu_seconds(anvil_pid) - anvil_before
            relay_cpu = _cpu_seconds(os.getpid()) - relay_before
            jobs = [relay.store.get(j) for j in ids]
            prove = [j.prove_seconds or 0.0 for j in jobs]
            states = {s.value: sum(j.state == s for j in jobs) for s in JobState}
            busy = _busy_fraction([recorder.spans[j] for j in ids], workers, sampler)
            peak_workers = [_peak_rss_mib(p) for p in _worker_pids(pool)]
        finally:
            relay.stop()
            pool.close()
    peak_relay = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(
        {
            "config": {
                "cpus": workers,
                "prover_workers": workers,
                "prefetch_per_worker": 1,
                "rayon_threads_per_worker": 1,
                "anvil_block_time_s": BLOCK_TIME_S,
                "confirmations": 1,
                "poll_interval_s": POLL_S,
            },
            "worker_warm_up_s": round(warm_up_s, 2),
            "baseline_proving_alone": baseline,
            "latency_s": {
                "runs": [round(v, 3) for v in latencies],
                "median": round(statistics.median(latencies), 3),
                "max": round(max(latencies), 3),
                "target": LATENCY_TARGET_S,
            },
            "throughput": {
                "jobs": THROUGHPUT_JOBS,
                "outcomes": {k: v for k, v in states.items() if v},
                "submit_s": round(submit_s, 2),
                "elapsed_s": round(elapsed, 2),
                "jobs_per_s": round(THROUGHPUT_JOBS / elapsed, 2),
                "prove_s_median": round(statistics.median(prove), 3),
                "proving_bound_jobs_per_s": round(workers / statistics.mean(prove), 2),
                "worker_cpu_busy": round(worker_cpu / (workers * elapsed), 3),
                "anvil_cpu_share": round(anvil_cpu / (workers * elapsed), 3),
                "relay_cpu_share": round(relay_cpu / (workers * elapsed), 3),
                "relay_cpu_share_by_thread": threads,
                **busy,
                "busy_target": BUSY_TARGET,
            },
            "peak_rss_mib": {
                "relay_process": round(peak_relay, 1),
                "per_worker": [round(v, 1) for v in peak_workers],
                "total": round(peak_relay + sum(peak_workers), 1),
            },
        }
    )
    return {"relay": result}


def table(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`run`'s result."""
    r = result["relay"]
    lat, thr, mem, cfg = r["latency_s"], r["throughput"], r["peak_rss_mib"], r["config"]
    base = r["baseline_proving_alone"]
    submitter = thr["relay_cpu_share_by_thread"].get("submitter", 0.0)
    ok = "✔" if lat["max"] <= lat["target"] else "✘"
    busy_ok = "✔" if thr["prover_cpu_busy"] >= thr["busy_target"] else "✘"
    rows = [
        "| prover relay (anvil, "
        f"{cfg['anvil_block_time_s']} s blocks, {cfg['confirmations']} confirmation) | value "
        "| target |",
        "|---|---:|---|",
        f"| submission → payout, one job (median / max of {len(lat['runs'])}) "
        f"| {lat['median']:.2f} s / {lat['max']:.2f} s | ≤ {lat['target']:.0f} s {ok} |",
        f"| {thr['jobs']} jobs, submission → last payout | {thr['elapsed_s']:.1f} s "
        f"({thr['jobs_per_s']:.2f} jobs/s) | |",
        f"| baseline, same run: the pool proving {base['proofs']} records alone (no relay, no "
        f"chain) | {base['jobs_per_s']:.2f} jobs/s (median proof {base['prove_s_median']:.2f} s) "
        f"| |",
        f"| relay throughput / baseline | {thr['jobs_per_s'] / base['jobs_per_s']:.0%} | |",
        f"| proving-bound throughput in the relay run ({cfg['prover_workers']} workers, median "
        f"proof {thr['prove_s_median']:.2f} s) | {thr['proving_bound_jobs_per_s']:.2f} jobs/s | |",
        f"| while the queue was non-empty ({thr['queue_full_window_s']:.1f} s): cores busy "
        f"proving (CPU) / prover slots occupied | {thr['prover_cpu_busy']:.0%} / "
        f"{thr['prover_slots_busy']:.0%} | ≥ {thr['busy_target']:.0%} {busy_ok} |",
        f"| CPU over the 50-job run (share of cores × wall): provers / anvil / relay "
        f"(of which submitter) | {thr['worker_cpu_busy']:.0%} / {thr['anvil_cpu_share']:.0%} / "
        f"{thr['relay_cpu_share']:.1%} ({submitter:.1%}) | |",
        f"| peak RSS: relay process / per worker / total | {mem['relay_process']:.0f} / "
        f"{'+'.join(f'{v:.0f}' for v in mem['per_worker'])} / {mem['total']:.0f} MiB | |",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    import json
    import sys

    data = run()
    json.dump(data, sys.stderr, indent=1)
    sys.stderr.write("\n")
    print(table(data))
