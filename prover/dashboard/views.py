"""What each page shows, computed from the index (and the relay's job list).

Values only: decisions, amounts, gas, times, hashes. Nothing here reads a model output or a
patient record (the index holds neither; relay jobs are cut to their state and timings).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prover.index.ledger import ETH, Ledger

E18 = Decimal(10) ** 18
#: Relay job fields a page may show (never outputs, logit, commitment or record data).
JOB_FIELDS = (
    "job_id",
    "state",
    "policy_id",
    "model",
    "model_version",
    "tx_hash",
    "claim_id",
    "created_at",
    "final_at",
    "reason",
)


def eth(wei: int) -> str:
    """Wei as ETH, exact, without trailing zeros."""
    text = format(Decimal(wei) / E18, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def asset_name(asset: str) -> str:
    return "ETH" if asset.lower() == ETH else asset


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "—"


def short(text: str | None, keep: int = 10) -> str:
    if not text:
        return "—"
    return text if len(text) <= keep + 4 else f"{text[:keep]}…{text[-4:]}"


@dataclass(frozen=True)
class Bar:
    """One bar of a chart (stacked parts as ``(css class, value, label)``)."""

    label: str
    parts: tuple[tuple[str, float, str], ...]


def svg_chart(
    title: str, bars: list[Bar], unit: str = "", width: int = 360, height: int = 140
) -> dict[str, Any]:
    """A bar chart's geometry, drawn by the ``_chart.html`` template as inline SVG."""
    top = max((sum(v for _, v, _ in b.parts) for b in bars), default=0.0) or 1.0
    slot = (width - 20) / max(len(bars), 1)
    bar_w = max(min(slot * 0.7, 48), 2)
    rects = []
    for i, b in enumerate(bars):
        x = 10 + i * slot + (slot - bar_w) / 2
        y = height - 24.0
        for cls, value, label in b.parts:
            h = (height - 40) * value / top
            y -= h
            rects.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(bar_w, 1),
                    "h": round(h, 1),
                    "cls": cls,
                    "title": f"{b.label}: {label}",
                }
            )
        rects.append(
            {"x": round(x + bar_w / 2, 1), "y": height - 8, "text": b.label, "cls": "axis"}
        )
    return {
        "title": title,
        "width": width,
        "height": height,
        "rects": rects,
        "unit": unit,
        "empty": not bars,
    }


def model_label(model_id: str, version: int, names: dict[str, str]) -> str:
    return f"{names.get(model_id.lower(), short(model_id))} v{version}"


def insurer(
    led: Ledger, names: dict[str, str], jobs: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Pools, reserves, products, policies, claims (decision, tx, gas, latency), charts."""
    latency = {}
    for j in jobs or []:
        if j.get("tx_hash") and j.get("final_at"):
            latency[str(j["tx_hash"]).lower()] = float(j["final_at"]) - float(j["created_at"])
    claims = []
    for c in sorted(led.claims.values(), key=lambda c: c.id, reverse=True):
        policy = led.policies[c.policy_id]
        seconds = latency.get(c.tx_hash.lower())
        claims.append(
            {
                "id": c.id,
                "policy": c.policy_id,
                "product": policy.product_id,
                "decision": c.decision,
                "amount": eth(c.amount),
                "amount_wei": c.amount,
                "tx": c.tx_hash,
                "tx_short": short(c.tx_hash),
                "gas": c.gas,
                "block": c.block_number,
                "time": when(c.timestamp),
                "latency": "—" if seconds is None else f"{seconds:.2f} s",
            }
        )
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: {"paid": 0, "denied": 0, "wei": 0})
    for c in led.claims.values():
        d = per_day[day(c.timestamp)]
        d[c.decision] += 1
        d["wei"] += c.amount
    days = sorted(per_day)
    rate = {k: 100 * v["denied"] / max(1, v["paid"] + v["denied"]) for k, v in per_day.items()}
    charts = [
        svg_chart(
            "claims per day",
            [
                Bar(
                    k,
                    (
                        ("paid", per_day[k]["paid"], f"{per_day[k]['paid']} paid"),
                        ("denied", per_day[k]["denied"], f"{per_day[k]['denied']} denied"),
                    ),
                )
                for k in days
            ],
        ),
        svg_chart(
            "payouts per day (ETH)",
            [
                Bar(
                    k,
                    (
                        (
                            "paid",
                            float(Decimal(per_day[k]["wei"]) / E18),
                            f"{eth(per_day[k]['wei'])} ETH",
                        ),
                    ),
                )
                for k in days
            ],
        ),
        svg_chart(
            "denial rate per day (%)",
            [Bar(k, (("denied", rate[k], f"{rate[k]:.0f} %"),)) for k in days],
        ),
        svg_chart(
            "gas per claim",
            [
                Bar(f"#{c.id}", (("gas", c.gas, f"{c.gas:,} gas"),))
                for c in sorted(led.claims.values(), key=lambda c: c.id)[-20:]
            ],
        ),
    ]
    total = len(led.claims)
    denied = sum(1 for c in led.claims.values() if c.decision == "denied")
    return {
        "pools": [
            {
                "id": p.id,
                "insurer": p.insurer,
                "asset": asset_name(p.asset),
                "balance": eth(p.balance),
                "balance_wei": p.balance,
                "reserved": eth(p.reserved),
                "reserved_wei": p.reserved,
                "free": eth(p.balance - p.reserved),
                "funded": eth(p.funded),
                "paid": eth(p.paid),
                "withdrawn": eth(p.withdrawn),
                "hospitals": sorted(p.hospitals),
            }
            for p in led.pools.values()
        ],
        "products": [
            {
                "id": p.id,
                "pool": p.pool_id,
                "model": model_label(p.model_id, p.version, names),
                "rule": f"{p.comparison} on output {p.output}"
                + ("" if p.comparison == "arg-max-is" else f" vs {p.threshold}"),
                "payout": eth(p.payout),
                "retired": p.retired,
            }
            for p in led.products.values()
        ],
        "policies": [
            {
                "id": p.id,
                "product": p.product_id,
                "holder": p.holder,
                "coverage": eth(p.coverage),
                "paid": eth(p.paid),
                "reserved": eth(p.reserved),
                "expiry": when(p.expiry),
            }
            for p in sorted(led.policies.values(), key=lambda p: p.id, reverse=True)
        ],
        "claims": claims,
        "rejected": len(led.rejected),
        "totals": {
            "claims": total,
            "paid": total - denied,
            "denied": denied,
            "denial_rate": f"{100 * denied / total:.0f} %" if total else "—",
            "paid_wei": sum(c.amount for c in led.claims.values()),
            "paid_eth": eth(sum(c.amount for c in led.claims.values())),
            "gas_mean": f"{statistics.mean(c.gas for c in led.claims.values()):,.0f}"
            if total
            else "—",
        },
        "charts": charts,
        "latency_known": bool(jobs),
    }


def dao(led: Ledger, names: dict[str, str], now: float | None = None) -> dict[str, Any]:
    """Bounties, submissions, awards, deadlines."""
    now = time.time() if now is None else now
    return {
        "bounties": [
            {
                "id": b.id,
                "sponsor": b.sponsor,
                "asset": asset_name(b.asset),
                "amount": eth(b.amount),
                "amount_wei": b.amount,
                "model": model_label(b.model_id, b.version, names),
                "min_metric": b.min_metric,
                "deadline": when(b.deadline),
                "status": b.status,
                "open": b.status == "open" and b.deadline > now,
                "winner": b.winner,
                "metric": b.metric,
                "tx": b.tx_hash,
                "tx_short": short(b.tx_hash),
            }
            for b in sorted(led.bounties.values(), key=lambda b: b.id, reverse=True)
        ],
        "submissions": [
            {
                "commitment": short(e.args["commitment"], 14),
                "committer": e.args["committer"],
                "block": e.block_number,
                "tx": e.tx_hash,
                "tx_short": short(e.tx_hash),
            }
            for e in reversed(led.submissions)
        ],
        "escrow": eth(led.escrow()),
    }


def registry(led: Ledger, names: dict[str, str]) -> dict[str, Any]:
    """Models, versions, revocations, verifier code hashes."""
    return {
        "models": [
            {
                "label": model_label(m.model_id, m.version, names),
                "model_id": m.model_id,
                "version": m.version,
                "status": m.status,
                "verifier": m.verifier,
                "code_hash": m.code_hash,
                "onnx": m.onnx_sha256,
                "vk": m.vk_sha256,
                "tx": m.tx_hash,
                "tx_short": short(m.tx_hash),
                "block": m.block_number,
                "revoked_by": m.revoked_by,
                "revoked_tx": m.revoked_tx,
            }
            for m in led.models.values()
        ],
        "stopped": led.registry_stopped,
    }


def relay(
    jobs: list[dict[str, Any]] | None, health: dict[str, Any] | None, error: str | None
) -> dict[str, Any]:
    """Jobs by state and their latencies (cut to :data:`JOB_FIELDS`)."""
    cut = [{k: j.get(k) for k in JOB_FIELDS} for j in (jobs or [])]
    by_state: dict[str, int] = defaultdict(int)
    latencies = []
    for j in cut:
        by_state[str(j["state"])] += 1
        if j["final_at"] is not None and j["created_at"] is not None:
            seconds = float(j["final_at"]) - float(j["created_at"])
            j["latency"] = f"{seconds:.2f} s"
            latencies.append(seconds)
        else:
            j["latency"] = "—"
        j["tx_short"] = short(j["tx_hash"])
        j["created"] = when(int(float(j["created_at"]))) if j["created_at"] else "—"
    quant = {}
    if latencies:
        ordered = sorted(latencies)
        quant = {
            "median": f"{statistics.median(ordered):.2f} s",
            "p95": f"{ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.2f} s",
            "max": f"{ordered[-1]:.2f} s",
        }
    return {
        "jobs": list(reversed(cut))[:200],
        "by_state": dict(sorted(by_state.items())),
        "latency": quant,
        "error": error,
        "health": {
            k: health.get(k)
            for k in ("status", "submitter", "workers", "queue_limit", "paused", "needs_admin")
        }
        if health
        else None,
    }
