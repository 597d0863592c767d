"""Prometheus metrics of one relay (own registry, so several relays can share a process).

Labels never carry job data: only states, outcomes and retry kinds.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from prover.relay.store import JobStore

PROVE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0, 300.0, 3600.0)
RETRY_KINDS = (
    "rpc_error",
    "failover",
    "rebroadcast",
    "replacement",
    "reorg",
    "foreign_nonce",
    "prove_retry",
    "worker_restart",
    "out_of_funds",
)


class _JobsByState(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "zkcare_relay_jobs", "Claim jobs in the store, by state", labels=["state"]
        )
        for state, count in self.store.counts().items():
            family.add_metric([state.value], count)
        yield family


class RelayMetrics:
    """The relay's metrics."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_JobsByState(store))
        self.proving_seconds = Histogram(
            "zkcare_relay_proving_seconds",
            "Wall time of one proof in a worker",
            buckets=PROVE_BUCKETS,
            registry=self.registry,
        )
        self.submission_latency = Histogram(
            "zkcare_relay_submission_latency_seconds",
            "Job submission (HTTP 202) to final state on-chain",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.confirmation_latency = Histogram(
            "zkcare_relay_confirmation_latency_seconds",
            "First broadcast to final state (mining plus confirmations)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "zkcare_relay_retries",
            "Retries and recoveries, by kind",
            ["kind"],
            registry=self.registry,
        )
        for kind in RETRY_KINDS:
            self.retries.labels(kind)
        self.transactions = Counter(
            "zkcare_relay_transactions_signed",
            "Transactions signed (first attempts and replacements)",
            registry=self.registry,
        )
        self.submitter_paused = Gauge(
            "zkcare_relay_submitter_paused",
            "1 while new submissions are paused (submitter out of funds)",
            registry=self.registry,
        )
        self.chain_up = Gauge(
            "zkcare_relay_chain_up",
            "1 while the current RPC endpoint answers",
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "zkcare_relay_rejected_requests",
            "Job submissions answered 4xx, by status code",
            ["status"],
            registry=self.registry,
        )
