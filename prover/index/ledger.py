"""The state the indexed events add up to: pools, products, policies, claims, bounties, models.

What the dashboard shows and what the audit compares with the chain. It holds no model output:
the index never stores one (:data:`prover.index.contracts.REDACTED`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prover.index.store import Event, Store, Tx

ETH = "0x0000000000000000000000000000000000000000"
MODEL_STATUS = {0: "unregistered", 1: "active", 2: "revoked"}
BOUNTY_STATUS = {0: "none", 1: "open", 2: "awarded", 3: "reclaimed"}
COMPARISON = {0: "at-least", 1: "at-most", 2: "arg-max-is"}


@dataclass
class Pool:
    id: int
    insurer: str
    asset: str
    funded: int = 0
    paid: int = 0
    withdrawn: int = 0
    reserved: int = 0  # open policies' remaining coverage
    hospitals: set[str] = field(default_factory=set)

    @property
    def balance(self) -> int:
        """funded − paid − withdrawn."""
        return self.funded - self.paid - self.withdrawn


@dataclass
class Product:
    id: int
    pool_id: int
    model_id: str
    version: int
    comparison: str
    output: int
    threshold: int
    payout: int
    retired: bool = False


@dataclass
class Policy:
    id: int
    product_id: int
    holder: str
    coverage: int
    expiry: int
    paid: int = 0
    released: int = 0

    @property
    def reserved(self) -> int:
        """Coverage still reserved: coverage − paid − released."""
        return self.coverage - self.paid - self.released


@dataclass
class Claim:
    id: int
    policy_id: int
    decision: str  # paid | denied
    amount: int
    tx_hash: str
    block_number: int
    timestamp: int
    gas: int  # the transaction's gas, shared equally by the claims it settled


@dataclass
class Bounty:
    id: int
    sponsor: str
    asset: str
    amount: int
    model_id: str
    version: int
    min_metric: int
    deadline: int
    status: str = "open"
    winner: str | None = None
    metric: int | None = None
    tx_hash: str | None = None  # the award's or the reclaim's


@dataclass
class ModelEntry:
    model_id: str
    version: int
    verifier: str
    code_hash: str
    onnx_sha256: str
    vk_sha256: str
    layout: dict[str, int]
    tx_hash: str
    block_number: int
    status: str = "active"
    revoked_by: str | None = None
    revoked_tx: str | None = None


@dataclass
class Ledger:
    """Everything folded from the events, in chain order."""

    pools: dict[int, Pool] = field(default_factory=dict)
    products: dict[int, Product] = field(default_factory=dict)
    policies: dict[int, Policy] = field(default_factory=dict)
    claims: dict[int, Claim] = field(default_factory=dict)
    rejected: list[Event] = field(default_factory=list)
    bounties: dict[int, Bounty] = field(default_factory=dict)
    submissions: list[Event] = field(default_factory=list)
    models: dict[tuple[str, int], ModelEntry] = field(default_factory=dict)
    # (contract, asset) -> credited − withdrawn (pull payments not yet withdrawn)
    credits: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    registry_stopped: bool = False
    events: int = 0

    def pool_of_policy(self, policy_id: int) -> Pool:
        """The pool a policy draws on."""
        return self.pools[self.products[self.policies[policy_id].product_id].pool_id]

    @classmethod
    def build(cls, events: list[Event], txs: dict[str, Tx], times: dict[int, int]) -> Ledger:
        """Fold ``events`` (chain order)."""
        led = cls()
        per_tx: dict[str, int] = defaultdict(int)
        for e in events:
            if e.name in ("ClaimPaid", "ClaimDenied"):
                per_tx[e.tx_hash] += 1
        for e in events:
            led.events += 1
            led._apply(e, txs, times, per_tx)
        return led

    @classmethod
    def of(cls, store: Store) -> Ledger:
        """The ledger of everything in ``store``."""
        return cls.build(store.events(), store.txs(), store.block_times())

    def _apply(
        self, e: Event, txs: dict[str, Tx], times: dict[int, int], per_tx: dict[str, int]
    ) -> None:
        a = e.args
        n = e.name
        if n == "PoolCreated":
            self.pools[a["poolId"]] = Pool(a["poolId"], a["insurer"], a["asset"])
        elif n == "PoolFunded":
            self.pools[a["poolId"]].funded += a["amount"]
        elif n == "PoolWithdrawn":
            self.pools[a["poolId"]].withdrawn += a["amount"]
        elif n == "HospitalTrustUpdated":
            hospitals = self.pools[a["poolId"]].hospitals
            (hospitals.add if a["trusted"] else hospitals.discard)(a["hospital"])
        elif n == "ProductCreated":
            self.products[a["productId"]] = Product(
                a["productId"],
                a["poolId"],
                a["modelId"],
                a["version"],
                COMPARISON.get(a["comparison"], str(a["comparison"])),
                a["output"],
                a["threshold"],
                a["payout"],
            )
        elif n == "ProductRetired":
            self.products[a["productId"]].retired = True
        elif n == "PolicyIssued":
            self.policies[a["policyId"]] = Policy(
                a["policyId"], a["productId"], a["holder"], a["coverage"], a["expiry"]
            )
            self.pool_of_policy(a["policyId"]).reserved += a["coverage"]
        elif n == "PolicyReleased":
            self.policies[a["policyId"]].released += a["amount"]
            self.pool_of_policy(a["policyId"]).reserved -= a["amount"]
        elif n in ("ClaimPaid", "ClaimDenied"):
            amount = int(a.get("amount", 0))
            tx = txs.get(e.tx_hash)
            gas = tx.gas_used // per_tx[e.tx_hash] if tx else 0
            self.claims[a["claimId"]] = Claim(
                a["claimId"],
                a["policyId"],
                "paid" if n == "ClaimPaid" else "denied",
                amount,
                e.tx_hash,
                e.block_number,
                times.get(e.block_number, 0),
                gas,
            )
            if amount:
                self.policies[a["policyId"]].paid += amount
                pool = self.pool_of_policy(a["policyId"])
                pool.paid += amount
                pool.reserved -= amount
        elif n == "ClaimRejected":
            self.rejected.append(e)
        elif n == "BountyCreated":
            self.bounties[a["bountyId"]] = Bounty(
                a["bountyId"],
                a["sponsor"],
                a["asset"],
                a["amount"],
                a["modelId"],
                a["version"],
                a["minMetric"],
                a["deadline"],
            )
        elif n == "SubmissionCommitted":
            self.submissions.append(e)
        elif n == "BountyAwarded":
            b = self.bounties[a["bountyId"]]
            b.status, b.winner, b.metric = "awarded", a["researcher"], a["metric"]
            b.tx_hash = e.tx_hash
        elif n == "BountyReclaimed":
            b = self.bounties[a["bountyId"]]
            b.status, b.tx_hash = "reclaimed", e.tx_hash
        elif n == "ModelRegistered":
            layout = a["layout"] if isinstance(a["layout"], dict) else {}
            self.models[(a["modelId"], a["version"])] = ModelEntry(
                a["modelId"],
                a["version"],
                a["verifier"],
                a["verifierCodeHash"],
                a["onnxSha256"],
                a["vkSha256"],
                layout,
                e.tx_hash,
                e.block_number,
            )
        elif n == "ModelRevoked":
            m = self.models[(a["modelId"], a["version"])]
            m.status, m.revoked_by, m.revoked_tx = "revoked", a["guardian"], e.tx_hash
        elif n == "RegistryStopped":
            self.registry_stopped = True
        elif n == "PayoutCredited":
            self.credits[(e.contract, a["asset"])] += a["amount"]
        elif n == "CreditWithdrawn":
            self.credits[(e.contract, a["asset"])] -= a["amount"]

    def escrow(self, asset: str = ETH) -> int:
        """What the bounty contract should hold in ``asset`` for open bounties."""
        return sum(
            b.amount
            for b in self.bounties.values()
            if b.status == "open" and b.asset.lower() == asset.lower()
        )
