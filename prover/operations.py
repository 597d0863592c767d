"""Operator actions on a deployed zkcare (used by ``ape run manage``): typed, reusable.

Every function takes the connected ape account and a :class:`Deployment` (the contracts of
the connected chain, from ``deployments/<chain-id>.json``) and returns plain values. Amounts
are in whole units of the pool's asset (ether for ETH, the token's ``decimals()`` otherwise).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from prover.deploy import DEPLOYMENTS_DIR, EVAL_MODEL_NAME, model_id
from prover.exceptions import InvalidInput, ZkcareError

ETH = "0x" + "00" * 20
AT_LEAST, AT_MOST = 0, 1
INT128_MAX = 2**127 - 1
UINT128_MAX = 2**128 - 1


class NotDeployed(ZkcareError, LookupError):
    """The connected chain has no zkcare deployment manifest."""

    def __init__(self, chain_id: int, path: Path) -> None:
        super().__init__(
            f"no zkcare deployment for chain {chain_id} ({path}); run `ape run deploy all` first"
        )


class UnknownEntity(InvalidInput, LookupError):
    """A pool, product, policy, bounty or model that does not exist."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"unknown {kind} {ident}")


@dataclass
class Deployment:
    """The zkcare contracts on the connected chain."""

    data: dict[str, Any]
    registry: Any
    settlement: Any
    bounty: Any

    @classmethod
    def load(cls, directory: Path | None = None) -> Deployment:
        """Read the manifest of the connected chain and bind the contracts."""
        from ape import chain, project

        chain_id = int(chain.provider.chain_id)
        path = (directory or DEPLOYMENTS_DIR) / f"{chain_id}.json"
        if not path.is_file():
            raise NotDeployed(chain_id, path)
        data = json.loads(path.read_text())
        c = data["contracts"]
        for name in ("ModelRegistry", "ClaimSettlement", "ResearchBounty"):
            if name not in c or not bytes(chain.provider.get_code(c[name]["address"])):
                raise NotDeployed(chain_id, path)
        return cls(
            data,
            project.ModelRegistry.at(c["ModelRegistry"]["address"]),
            project.ClaimSettlement.at(c["ClaimSettlement"]["address"]),
            project.ResearchBounty.at(c["ResearchBounty"]["address"]),
        )

    def model(self, name: str) -> dict[str, Any]:
        """A registered model's manifest entry."""
        if name not in self.data.get("models", {}):
            raise UnknownEntity("model", f"{name!r} (known: {sorted(self.data['models'])})")
        entry: dict[str, Any] = self.data["models"][name]
        return entry


def parse_amount(text: str, decimals: int) -> int:
    """``"1.5"`` with 18 decimals -> 1.5e18; rejects negatives, zero and excess precision."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidInput(f"amount {text!r} is not a number") from exc
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"amount {text!r} must be a positive number")
    scaled = value * (Decimal(10) ** decimals)
    if scaled != scaled.to_integral_value():
        raise InvalidInput(f"amount {text!r} has more than {decimals} decimals")
    if scaled > UINT128_MAX:
        raise InvalidInput(f"amount {text!r} is too large")
    return int(scaled)


def checksum(address: str) -> str:
    """Validate and checksum an address."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(address):
        raise InvalidInput(f"{address!r} is not an Ethereum address")
    return str(to_checksum_address(address))


def _decimals(asset: str) -> int:
    if asset.lower() == ETH:
        return 18
    from ape import Contract

    return int(Contract(asset).decimals())


def _event(receipt: Any, contract: Any, name: str) -> Any:
    return receipt.decode_logs(getattr(contract, name))[0]


def pool_of(d: Deployment, pool_id: int) -> Any:
    """A pool record, or UnknownEntity."""
    pool = d.settlement.getPool(pool_id)
    if str(pool.insurer).lower() == ETH:
        raise UnknownEntity("pool", pool_id)
    return pool


def create_pool(d: Deployment, account: Any, token: str | None) -> int:
    """Create a pool in ETH or ``token``; returns its id."""
    asset = checksum(token) if token else ETH
    receipt = d.settlement.createPool(asset, sender=account)
    return int(_event(receipt, d.settlement, "PoolCreated").poolId)


def fund_pool(d: Deployment, account: Any, pool_id: int, amount: str) -> int:
    """Fund a pool (approving the token first); returns the raw amount sent."""
    pool = pool_of(d, pool_id)
    asset = str(pool.asset).lower()
    raw = parse_amount(amount, _decimals(asset))
    if asset == ETH:
        d.settlement.fundPool(pool_id, raw, value=raw, sender=account)
    else:
        from ape import Contract

        Contract(asset).approve(d.settlement.address, raw, sender=account)
        d.settlement.fundPool(pool_id, raw, sender=account)
    return raw


def withdraw_pool(d: Deployment, account: Any, pool_id: int, amount: str, to: str) -> int:
    """Withdraw unreserved funds."""
    pool = pool_of(d, pool_id)
    raw = parse_amount(amount, _decimals(str(pool.asset)))
    d.settlement.withdrawFromPool(pool_id, raw, checksum(to), sender=account)
    return raw


def trust_hospital(d: Deployment, account: Any, pool_id: int, hospital: str, trusted: bool) -> None:
    """Register (or remove) a hospital whose attestations the pool accepts."""
    pool_of(d, pool_id)
    d.settlement.setHospitalTrust(pool_id, checksum(hospital), trusted, sender=account)


def create_product(
    d: Deployment,
    account: Any,
    pool_id: int,
    model: str,
    comparison: int,
    threshold: float,
    payout: str,
) -> int:
    """Define a product: pay ``payout`` if the model output compares to ``threshold``."""
    pool = pool_of(d, pool_id)
    entry = d.model(model)
    scale = int(entry["layout"][3])
    fixed = round(Decimal(str(threshold)) * (1 << scale))
    if abs(fixed) > INT128_MAX:
        raise InvalidInput(f"threshold {threshold} does not fit int128 at scale 2^{scale}")
    raw = parse_amount(payout, _decimals(str(pool.asset)))
    receipt = d.settlement.createProduct(
        pool_id,
        bytes.fromhex(entry["modelId"][2:]),
        int(entry["version"]),
        comparison,
        fixed,
        raw,
        sender=account,
    )
    return int(_event(receipt, d.settlement, "ProductCreated").productId)


def issue_policy(
    d: Deployment, account: Any, product_id: int, holder: str, coverage: str, days: float
) -> int:
    """Issue a policy (its coverage is reserved from the pool)."""
    product = d.settlement.getProduct(product_id)
    if int(product.payout) == 0:
        raise UnknownEntity("product", product_id)
    if days <= 0:
        raise InvalidInput(f"days must be positive, got {days}")
    pool = pool_of(d, int(product.poolId))
    raw = parse_amount(coverage, _decimals(str(pool.asset)))
    from ape import chain

    expiry = int(chain.pending_timestamp + days * 86400)
    receipt = d.settlement.issuePolicy(product_id, checksum(holder), raw, expiry, sender=account)
    return int(_event(receipt, d.settlement, "PolicyIssued").policyId)


def revoke_model(d: Deployment, account: Any, name: str, version: int) -> None:
    """Tombstone a model version (guardian)."""
    d.registry.revokeModel(model_id(name), version, sender=account)


def create_bounty(
    d: Deployment,
    account: Any,
    amount: str,
    min_accuracy: float,
    deadline_hours: float,
    token: str | None = None,
) -> int:
    """Escrow a bounty for the evaluation circuit on the committed held-out benchmark."""
    from ape import Contract, chain

    from prover.deploy import eval_reference_onnx
    from prover.evaluation import (
        LABELS_INDEX,
        WEIGHTS_INDEX,
        benchmark_commitments,
        build_eval_bundle,
        held_out_benchmark,
    )

    if not 0 <= min_accuracy <= 1:
        raise InvalidInput(f"min accuracy must be within [0, 1], got {min_accuracy}")
    if deadline_hours <= 0:
        raise InvalidInput(f"deadline must be in the future, got {deadline_hours} hours")
    entry = d.model(EVAL_MODEL_NAME)
    benchmark = held_out_benchmark()
    bundle = build_eval_bundle(eval_reference_onnx(), benchmark)
    bench_c, labels_c = benchmark_commitments(benchmark, bundle.input_scale)
    scale = int(entry["layout"][3])
    min_metric = int(Decimal(str(min_accuracy)) * (1 << scale))
    asset = checksum(token) if token else ETH
    raw = parse_amount(amount, _decimals(asset))
    deadline = int(chain.pending_timestamp + deadline_hours * 3600)
    params = (
        asset,
        raw,
        bytes.fromhex(entry["modelId"][2:]),
        int(entry["version"]),
        bench_c,
        labels_c,
        WEIGHTS_INDEX,
        LABELS_INDEX,
        min_metric,
        deadline,
    )
    if asset != ETH:
        Contract(asset).approve(d.bounty.address, raw, sender=account)
    receipt = d.bounty.createBounty(params, value=raw if asset == ETH else 0, sender=account)
    return int(_event(receipt, d.bounty, "BountyCreated").bountyId)


def reclaim_bounty(d: Deployment, account: Any, bounty_id: int) -> None:
    """Refund an unpaid bounty to its sponsor (possible from its deadline on)."""
    if not 0 < bounty_id <= int(d.bounty.bountyCount()):
        raise UnknownEntity("bounty", bounty_id)
    d.bounty.reclaim(bounty_id, sender=account)


def summary(d: Deployment) -> str:
    """A readable state summary."""
    s, b = d.settlement, d.bounty
    lines = [f"chain {d.data['chainId']}"]
    lines += [f"  {name:<24}{c['address']}" for name, c in sorted(d.data["contracts"].items())]
    lines.append("models:")
    for name, m in sorted(d.data.get("models", {}).items()):
        status = ["unregistered", "active", "revoked"][
            int(d.registry.getModelVersion(bytes.fromhex(m["modelId"][2:]), m["version"]).status)
        ]
        lines.append(f"  {name} v{m['version']}: {status}, verifier {m['verifier']}")
    pools, pool_id = [], 1
    while True:
        pool = s.getPool(pool_id)
        if str(pool.insurer).lower() == ETH:
            break
        pools.append(
            f"  pool {pool_id}: insurer {pool.insurer}, asset {pool.asset}, "
            f"balance {pool.balance}, reserved {pool.reserved}"
        )
        pool_id += 1
    lines += ["pools:", *(pools or ["  none"])]
    lines.append(f"claims settled: {s.claimCount()}")
    lines.append("bounties:")
    for i in range(1, int(b.bountyCount()) + 1):
        bounty = b.getBounty(i)
        status = ["none", "open", "awarded", "reclaimed"][int(bounty.status)]
        deadline = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(bounty.deadline)))
        lines.append(f"  bounty {i}: {status}, amount {bounty.amount}, deadline {deadline} UTC")
    if int(b.bountyCount()) == 0:
        lines.append("  none")
    return "\n".join(lines)
