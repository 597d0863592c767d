"""Export the index as CSV (one file per table) or one JSON document.

No export holds a model output: the index never stores one.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prover.index.ledger import Ledger
from prover.index.store import Store

EVENT_COLUMNS = ("block_number", "log_index", "tx_hash", "contract", "name", "args")


def tables(store: Store, ledger: Ledger | None = None) -> dict[str, list[dict[str, Any]]]:
    """The exported tables: every event, and the claims, pools, policies, bounties, models."""
    led = ledger or Ledger.of(store)
    events = [
        {
            "block_number": e.block_number,
            "log_index": e.log_index,
            "block_hash": e.block_hash,
            "tx_hash": e.tx_hash,
            "contract": e.contract,
            "name": e.name,
            "args": e.args,
        }
        for e in store.events()
    ]
    pools = [
        {
            **{k: v for k, v in asdict(p).items() if k != "hospitals"},
            "balance": p.balance,
            "hospitals": sorted(p.hospitals),
        }
        for p in led.pools.values()
    ]
    policies = [{**asdict(p), "reserved": p.reserved} for p in led.policies.values()]
    return {
        "events": events,
        "claims": [asdict(c) for c in led.claims.values()],
        "pools": pools,
        "policies": policies,
        "bounties": [asdict(b) for b in led.bounties.values()],
        "models": [asdict(m) for m in led.models.values()],
    }


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def export_csv(store: Store, directory: Path, ledger: Ledger | None = None) -> list[Path]:
    """Write ``<table>.csv`` per table into ``directory``; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables(store, ledger).items():
        path = directory / f"{name}.csv"
        columns = list(rows[0]) if rows else []
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row[c]) for c in columns])
        written.append(path)
    return written


def export_json(
    store: Store, path: Path, ledger: Ledger | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write every table (and ``extra``, e.g. the audit) as one JSON document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cursor = store.cursor()
    doc = {"block": cursor.number if cursor else None, **tables(store, ledger), **(extra or {})}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    return path
