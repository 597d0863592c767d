"""Reconcile the index with the chain, and trace a claim or an award back to its proof.

Every check reads the chain at the index's cursor block, so the comparison is of one moment:

- each pool's ``balance`` equals funded − paid − withdrawn, and ``reserved`` the open
  policies' remaining coverage (coverage − paid − released); each policy's ``reserved`` and
  ``paid`` too;
- each bounty's status, escrow and winner; the bounty contract's ETH balance equals the open
  bounties' escrow plus credits not yet withdrawn; the settlement's equals its ETH pools plus
  its credits;
- each model version's status and verifier code hash (registered, and still at its address);
- the claim and bounty counters.

A trace follows a claim (or an award) to its transaction, the attestation's signer (recovered
from the EIP-712 signature in the calldata), the model version, the verifier's code hash and
the proof's keccak256.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from prover.attestation import ATTESTATION_TYPE
from prover.exceptions import EventIndexError, TraceNotFound
from prover.index.contracts import Watched, abi_of, events_of
from prover.index.ledger import BOUNTY_STATUS, ETH, MODEL_STATUS, Ledger
from prover.index.store import Store

#: ``ClaimSettlement.Attestation``'s fields (name, type) in order, as the hospital signs them.
ATTESTATION_FIELDS = tuple((f["name"], f["type"]) for f in ATTESTATION_TYPE)
ATTESTATION_TYPEHASH = keccak(
    text="Attestation(" + ",".join(f"{t} {n}" for n, t in ATTESTATION_FIELDS) + ")"
)


@dataclass(frozen=True)
class Check:
    """One reconciliation: what the index says and what the chain says."""

    subject: str  # e.g. "pool 1 balance"
    indexed: str
    chain: str

    @property
    def ok(self) -> bool:
        return self.indexed == self.chain


@dataclass
class AuditReport:
    """All checks at one block."""

    block: int
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def render(self) -> str:
        """One line per check, then a verdict."""
        lines = [
            f"{'ok  ' if c.ok else 'FAIL'} {c.subject}: index {c.indexed}"
            + ("" if c.ok else f", chain {c.chain}")
            for c in self.checks
        ]
        verdict = "reconciled" if self.ok else f"{len(self.failures)} mismatches"
        lines.append(f"audit at block {self.block}: {len(self.checks)} checks, {verdict}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "ok": self.ok,
            "checks": [{**asdict(c), "ok": c.ok} for c in self.checks],
        }


class Auditor:
    """Reads the chain at the index's cursor and compares."""

    def __init__(
        self, w3: Web3, watched: Watched, store: Store, names: dict[str, str] | None = None
    ) -> None:
        self.names = names or {}
        self.w3 = w3
        self.watched = watched
        self.store = store
        self.c = {
            name: w3.eth.contract(address=addr, abi=list(abi_of(name)))
            for name, addr in watched.addresses.items()
        }

    def _call(self, contract: str, fn: str, *args: Any, block: int) -> Any:
        return getattr(self.c[contract].functions, fn)(*args).call(block_identifier=block)

    def reconcile(self, ledger: Ledger | None = None) -> AuditReport:
        """Every check (module docstring) at the cursor block."""
        cursor = self.store.cursor()
        if cursor is None:
            raise EventIndexError("the index is empty; sync it first")
        at = cursor.number
        led = ledger or Ledger.of(self.store)
        report = AuditReport(at)
        add = report.checks.append

        def check(subject: str, indexed: object, chain: object) -> None:
            add(Check(subject, str(indexed), str(chain)))

        for pool in led.pools.values():
            p = self._call("ClaimSettlement", "getPool", pool.id, block=at)
            check(f"pool {pool.id} balance (funded - paid - withdrawn)", pool.balance, p[2])
            check(f"pool {pool.id} reserved (open policies' coverage)", pool.reserved, p[3])
            check(f"pool {pool.id} insurer", pool.insurer, to_checksum_address(p[0]))
        for pol in led.policies.values():
            p = self._call("ClaimSettlement", "getPolicy", pol.id, block=at)
            check(f"policy {pol.id} reserved", pol.reserved, p[3])
            check(f"policy {pol.id} paid", pol.paid, p[4])
        settlement_eth = sum(p.balance for p in led.pools.values() if p.asset == ETH)
        settlement_eth += led.credits.get(("ClaimSettlement", ETH), 0)
        check(
            "ClaimSettlement ETH held (ETH pools + credits)",
            settlement_eth,
            self.w3.eth.get_balance(self.watched.addresses["ClaimSettlement"], at),
        )
        check(
            "claims settled (claimCount)",
            len(led.claims),
            self._call("ClaimSettlement", "claimCount", block=at),
        )
        for b in led.bounties.values():
            chain = self._call("ResearchBounty", "getBounty", b.id, block=at)
            # Bounty: sponsor, deadline, status, contextScale, asset, version, modelId,
            # minMetric, amount, winner
            check(f"bounty {b.id} status", b.status, BOUNTY_STATUS.get(int(chain[2])))
            check(f"bounty {b.id} escrow", b.amount, chain[8])
            winner = to_checksum_address(chain[9])
            check(f"bounty {b.id} winner", b.winner or ETH, winner)
        bounty_eth = led.escrow(ETH) + led.credits.get(("ResearchBounty", ETH), 0)
        check(
            "ResearchBounty ETH held (open escrows + credits)",
            bounty_eth,
            self.w3.eth.get_balance(self.watched.addresses["ResearchBounty"], at),
        )
        check(
            "bounties created (bountyCount)",
            len(led.bounties),
            self._call("ResearchBounty", "bountyCount", block=at),
        )
        for (mid, version), m in led.models.items():
            v = self._call(
                "ModelRegistry", "getModelVersion", bytes.fromhex(mid[2:]), version, block=at
            )
            # ModelVersion: verifier, status, instanceCount, inputIndex, outputIndex,
            # outputCount, outputScale, verifierCodeHash, onnxSha256, vkSha256
            label = f"model {self.names.get(mid.lower(), mid[:10] + '…')} v{version}"
            check(f"{label} status", m.status, MODEL_STATUS.get(int(v[1])))
            check(
                f"{label} verifier code hash",
                m.code_hash,
                "0x" + bytes(v[7]).hex(),
            )
            code = bytes(self.w3.eth.get_code(to_checksum_address(m.verifier), at))
            check(
                f"{label} verifier code at {m.verifier}",
                m.code_hash,
                "0x" + keccak(code).hex(),
            )
        return report

    # -- traces --

    def _claim_input(self, tx: Any, claim_id: int) -> dict[str, Any]:
        """The ``Claim`` struct in the transaction that settled ``claim_id``."""
        settlement = self.c["ClaimSettlement"]
        if str(tx["to"]).lower() != self.watched.addresses["ClaimSettlement"].lower():
            raise EventIndexError(
                f"claim {claim_id}: its transaction was sent to {tx['to']}, not the settlement "
                "(a contract wallet); its calldata cannot be traced without a call trace"
            )
        fn, params = settlement.decode_function_input(tx["input"])
        if fn.fn_name == "submitClaim":
            return dict(params["claim"])
        if fn.fn_name != "submitClaims":
            raise EventIndexError(f"claim {claim_id}: settled by {fn.fn_name}, not a claim call")
        # A batch: claims are settled in order; ClaimRejected(index) marks the skipped ones.
        receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
        topics = events_of("ClaimSettlement")
        index = 0
        for log in receipt["logs"]:
            abi = topics.get(bytes(log["topics"][0])) if log["topics"] else None
            if str(log["address"]).lower() != settlement.address.lower() or abi is None:
                continue
            name = abi["name"]
            if name not in ("ClaimRejected", "ClaimPaid", "ClaimDenied"):
                continue
            args = settlement.events[name]().process_log(log)["args"]
            if name == "ClaimRejected":
                index = int(args["index"]) + 1
            elif int(args["claimId"]) == claim_id:
                return dict(params["claims"][index])
            else:
                index += 1
        raise EventIndexError(f"claim {claim_id}: not found in its batch transaction")

    def _signer(self, claim: dict[str, Any], pool_id: int, at: int) -> str:
        """Who signed the claim's attestation (ECDSA), or the contract wallet that vouched."""
        onchain = bytes(self._call("ClaimSettlement", "ATTESTATION_TYPEHASH", block=at))
        if onchain != ATTESTATION_TYPEHASH:
            raise EventIndexError(
                f"the settlement's ATTESTATION_TYPEHASH 0x{onchain.hex()} is not zkcare's "
                f"Attestation({', '.join(n for n, _ in ATTESTATION_FIELDS)}): another version"
            )
        domain = bytes(self._call("ClaimSettlement", "domainSeparator", block=at))
        values = {
            "policyId": claim["policyId"],
            "poolId": pool_id,
            "hospital": to_checksum_address(claim["hospital"]),
            "inputCommitment": claim["inputCommitment"],
            "recordNullifier": bytes(claim["recordNullifier"]),
            "attestedAt": claim["attestedAt"],
            "expiry": claim["attestationExpiry"],
        }
        struct = keccak(
            encode(
                ["bytes32", *(t for _, t in ATTESTATION_FIELDS)],
                [ATTESTATION_TYPEHASH, *(values[n] for n, _ in ATTESTATION_FIELDS)],
            )
        )
        digest = keccak(b"\x19\x01" + domain + struct)
        signature = bytes(claim["signature"])
        if len(signature) == 65:
            try:
                return str(Account._recover_hash(digest, signature=signature))
            except Exception:  # noqa: BLE001 - not an ECDSA signature: a contract wallet's
                pass
        return f"{to_checksum_address(claim['hospital'])} (ERC-1271 contract wallet)"

    def _model(self, model_id: str, version: int, led: Ledger) -> dict[str, Any]:
        m = led.models.get((model_id, version))
        if m is None:
            raise EventIndexError(f"model {model_id} v{version} was never registered in the index")
        return {
            "name": self.names.get(model_id.lower()),
            "model_id": model_id,
            "version": version,
            "status": m.status,
            "registered_tx": m.tx_hash,
            "verifier": m.verifier,
            "verifier_code_hash": m.code_hash,
            "onnx_sha256": m.onnx_sha256,
            "vk_sha256": m.vk_sha256,
        }

    def trace_claim(self, claim_id: int, ledger: Ledger | None = None) -> dict[str, Any]:
        """A claim's decision, payout, transaction, attestation signer, model and proof hash."""
        led = ledger or Ledger.of(self.store)
        claim = led.claims.get(claim_id)
        if claim is None:
            raise TraceNotFound("claim", claim_id)
        tx = self.w3.eth.get_transaction(claim.tx_hash)  # type: ignore[arg-type]
        data = self._claim_input(tx, claim_id)
        policy = led.policies[claim.policy_id]
        product = led.products[policy.product_id]
        signer = self._signer(data, product.pool_id, claim.block_number)
        return {
            "claim_id": claim_id,
            "decision": claim.decision,
            "amount_wei": claim.amount,
            "policy_id": claim.policy_id,
            "holder": policy.holder,
            "pool_id": product.pool_id,
            "product_id": product.id,
            "tx_hash": claim.tx_hash,
            "block_number": claim.block_number,
            "sender": to_checksum_address(tx["from"]),
            "gas_used": claim.gas,
            "attestation": {
                "hospital": to_checksum_address(data["hospital"]),
                "signer": signer,
                "signer_is_hospital": signer == to_checksum_address(data["hospital"]),
                "record_nullifier": "0x" + bytes(data["recordNullifier"]).hex(),
                "input_commitment": hex(int(data["inputCommitment"])),
                "attested_at": int(data["attestedAt"]),
                "expiry": int(data["attestationExpiry"]),
            },
            "model": self._model(product.model_id, product.version, led),
            "proof_keccak256": "0x" + keccak(bytes(data["proof"])).hex(),
            "proof_bytes": len(bytes(data["proof"])),
        }

    def trace_award(self, bounty_id: int, ledger: Ledger | None = None) -> dict[str, Any]:
        """A bounty award's winner, transaction, model version (benchmark) and proof hash."""
        led = ledger or Ledger.of(self.store)
        bounty = led.bounties.get(bounty_id)
        if bounty is None or bounty.status != "awarded" or bounty.tx_hash is None:
            raise TraceNotFound("award of bounty", bounty_id)
        tx = self.w3.eth.get_transaction(bounty.tx_hash)  # type: ignore[arg-type]
        if str(tx["to"]).lower() != self.watched.addresses["ResearchBounty"].lower():
            raise EventIndexError(f"bounty {bounty_id}: award sent through {tx['to']}")
        fn, params = self.c["ResearchBounty"].decode_function_input(tx["input"])
        if fn.fn_name != "reveal":
            raise EventIndexError(f"bounty {bounty_id}: awarded by {fn.fn_name}, not reveal")
        receipt = self.w3.eth.get_transaction_receipt(bounty.tx_hash)  # type: ignore[arg-type]
        return {
            "bounty_id": bounty_id,
            "winner": bounty.winner,
            "amount_wei": bounty.amount,
            "metric": bounty.metric,
            "min_metric": bounty.min_metric,
            "tx_hash": bounty.tx_hash,
            "block_number": int(receipt["blockNumber"]),
            "sender": to_checksum_address(tx["from"]),
            "gas_used": int(receipt["gasUsed"]),
            "weights_commitment": hex(int(params["weightsCommitment"])),
            "model": self._model(bounty.model_id, bounty.version, led),
            "proof_keccak256": "0x" + keccak(bytes(params["proof"])).hex(),
            "proof_bytes": len(bytes(params["proof"])),
        }
