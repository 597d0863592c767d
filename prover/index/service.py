"""Open an index for a deployment (what ``audit`` and ``dashboard`` share)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from prover.index.audit import Auditor
from prover.index.contracts import Watched, model_names
from prover.index.export import export_csv, export_json
from prover.index.indexer import Indexer, SyncResult, connect
from prover.index.ledger import Ledger
from prover.index.store import Store, open_store
from prover.paths import ARTIFACTS


def default_db(watched: Watched) -> str:
    """``artifacts/index/<chain-id>-<settlement>.sqlite``."""
    tag = watched.addresses["ClaimSettlement"][2:10].lower()
    return str(ARTIFACTS / "index" / f"{watched.chain_id}-{tag}.sqlite")


@dataclass
class OpenIndex:
    """A deployment's index, connected to its chain."""

    w3: Web3
    watched: Watched
    store: Store
    indexer: Indexer
    names: dict[str, str]

    @classmethod
    def open(
        cls, rpc_url: str, deployment: Path, db: str | None = None, confirmations: int = 0
    ) -> OpenIndex:
        watched = Watched.from_manifest(deployment)
        w3 = connect(rpc_url)
        store = open_store(db or default_db(watched))
        indexer = Indexer(w3, watched, store, confirmations=confirmations)
        return cls(w3, watched, store, indexer, model_names(deployment))

    def close(self) -> None:
        self.store.close()


def run_audit(
    index: OpenIndex,
    *,
    claim: int | None = None,
    award: int | None = None,
    csv_dir: Path | None = None,
    json_file: Path | None = None,
) -> tuple[SyncResult, Any, list[Path]]:
    """Sync, then trace one claim/award or reconcile everything; export if asked.

    Returns the sync, the trace (a dict) or the :class:`AuditReport`, and the files written.
    """
    synced = index.indexer.sync()
    led = Ledger.of(index.store)
    auditor = Auditor(index.w3, index.watched, index.store, index.names)
    result: Any
    if claim is not None:
        result = auditor.trace_claim(claim, led)
    elif award is not None:
        result = auditor.trace_award(award, led)
    else:
        result = auditor.reconcile(led)
    files: list[Path] = []
    if csv_dir is not None:
        files += export_csv(index.store, csv_dir, led)
    if json_file is not None:
        extra = {"audit": result if isinstance(result, dict) else result.as_dict()}
        files.append(export_json(index.store, json_file, led, extra))
    return synced, result, files


def as_json(value: Any) -> str:
    """A trace as indented JSON."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)
