"""The relay's view of the chain: RPC failover, ClaimSettlement calls, revert decoding.

:class:`RpcPool` wraps several JSON-RPC endpoints of the same chain. A transport failure
(connection refused, timeout, HTTP error) moves it to the next endpoint and reports the failover,
so the submitter can reconcile; JSON-RPC errors (the node answered) are not failovers. Nonces are
never taken from a node (see :mod:`prover.relay.nonces`), so switching endpoints can neither
reuse nor skip one. URLs are redacted (scheme, host, port) wherever they are reported, since
provider URLs often embed API keys.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from prover.exceptions import ChainError, ChainUnavailable
from prover.relay.abi import CLAIM_SETTLEMENT_ABI, MODEL_REGISTRY_ABI

log = logging.getLogger("zkcare.relay.chain")
T = TypeVar("T")
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_TRANSPORT_ERRORS = (requests.exceptions.RequestException, OSError, TimeoutError)


def redact_url(url: str) -> str:
    """``scheme://host:port`` only: paths, queries and credentials may hold API keys."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _web3(url: str, timeout: float) -> Web3:
    """A lean client for one endpoint.

    The session resolves proxy settings from the environment once, here, instead of on every
    request (``requests`` rescans ``os.environ`` per call: a third of the relay's RPC CPU).
    No middleware: the relay sends only raw signed transactions (no gas or fee filling), uses no
    ENS names, and its ``eth_call``s carry no ``chainId`` for web3's validator to check, which
    would otherwise cost an ``eth_chainId`` round trip per call.
    """
    session = requests.Session()
    session.trust_env = False
    proxies = requests.utils.get_environ_proxies(url)
    provider = Web3.HTTPProvider(
        url,
        request_kwargs={"timeout": timeout, "proxies": proxies},
        session=session,
        exception_retry_configuration=None,
    )
    return Web3(provider, middleware=[])


class RpcPool:
    """Several endpoints of one chain, used one at a time, failing over in order."""

    def __init__(
        self,
        urls: list[str],
        timeout: float = 10.0,
        on_failover: Callable[[int, int], None] | None = None,
        expected_chain_id: int | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is required")
        self.urls = list(urls)
        self._w3s = [_web3(url, timeout) for url in urls]
        self._lock = threading.Lock()
        self.index = 0
        self.on_failover = on_failover
        #: The chain every endpoint must serve: from settings, else the first one seen.
        self.expected_chain_id = expected_chain_id

    @property
    def current(self) -> str:
        """The endpoint in use (redacted)."""
        return redact_url(self.urls[self.index])

    def call(self, fn: Callable[[Web3], T]) -> T:
        """Run ``fn`` against the current endpoint, failing over on transport errors."""
        errors: list[str] = []
        for _ in range(len(self._w3s)):
            with self._lock:
                index = self.index
            try:
                return fn(self._w3s[index])
            except _TRANSPORT_ERRORS as exc:
                errors.append(f"{redact_url(self.urls[index])} ({type(exc).__name__})")
                self._fail_over(index)
        raise ChainUnavailable(", ".join(errors[:1]), "; ".join(errors))

    def _fail_over(self, failed: int) -> None:
        if len(self._w3s) == 1:
            return
        with self._lock:
            if self.index != failed:
                return  # another thread already moved on
            self.index = (failed + 1) % len(self._w3s)
            new = self.index
        log.warning("RPC endpoint %s failed; using %s", redact_url(self.urls[failed]), self.current)
        if self.on_failover is not None:
            self.on_failover(failed, new)

    def chain_id(self) -> int:
        """The current endpoint's chain id, checked against the first one seen."""
        chain_id = int(self.call(lambda w3: w3.eth.chain_id))
        if self.expected_chain_id is None:
            self.expected_chain_id = chain_id
        elif chain_id != self.expected_chain_id:
            raise ChainError(
                f"RPC endpoint {self.current} serves chain {chain_id}, "
                f"not {self.expected_chain_id}; refusing to use it"
            )
        return chain_id


# ------------------------------------------------------------------------------- settlement


@dataclass(frozen=True)
class PolicyInfo:
    """``ClaimSettlement.getPolicy``."""

    holder: str
    expiry: int
    product_id: int
    reserved: int
    paid: int


@dataclass(frozen=True)
class ProductInfo:
    """``ClaimSettlement.getProduct``; ``comparison``, ``output`` and ``threshold`` are its
    ``PayoutRule`` (``Comparison``: 0 AtLeast, 1 AtMost, 2 ArgMaxIs)."""

    model_id: bytes
    pool_id: int
    version: int
    retired: bool
    payout: int
    comparison: int
    output: int
    threshold: int


@dataclass(frozen=True)
class ClaimOutcome:
    """What a mined claim did (``policy_id``: the policy its event names)."""

    paid: bool
    claim_id: int
    amount: int
    policy_id: int = 0


@dataclass(frozen=True)
class DecodedError:
    """A custom error decoded from revert data: its name and arguments by name."""

    name: str
    args: dict[str, Any]


class Broadcast(Enum):
    """How a node answered ``eth_sendRawTransaction``."""

    SENT = "sent"
    KNOWN = "already known"
    NONCE_USED = "nonce too low"
    NO_FUNDS = "insufficient funds"
    UNDERPRICED = "underpriced"
    REJECTED = "rejected"

    @property
    def accepted(self) -> bool:
        """The node has the transaction (new or already known)."""
        return self in (Broadcast.SENT, Broadcast.KNOWN)


_BROADCAST_PATTERNS: list[tuple[tuple[str, ...], Broadcast]] = [
    (
        ("already known", "already imported", "known transaction", "alreadyknown"),
        Broadcast.KNOWN,
    ),
    (("nonce too low", "nonce has already been used", "oldnonce"), Broadcast.NONCE_USED),
    (("insufficient funds",), Broadcast.NO_FUNDS),
    (("underpriced", "fee too low", "less than block base fee", "feecap"), Broadcast.UNDERPRICED),
]


def classify_broadcast_error(message: str) -> Broadcast:
    """Map a node's error message (geth, anvil, nethermind, erigon wording) to an outcome."""
    text = message.lower()
    for needles, outcome in _BROADCAST_PATTERNS:
        if any(n in text for n in needles):
            return outcome
    return Broadcast.REJECTED


class RevertDecoder:
    """Turns revert data into ``Name(arg=value, …)`` using the ABI's errors."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for entry in abi:
            if entry["type"] != "error":
                continue
            types = [i["type"] for i in entry["inputs"]]
            sig = f"{entry['name']}({','.join(types)})"
            names = [i["name"] for i in entry["inputs"]]
            self._errors[function_signature_to_4byte_selector(sig)] = (entry["name"], types, names)
        self._errors[function_signature_to_4byte_selector("Error(string)")] = (
            "Error",
            ["string"],
            ["message"],
        )
        self._errors[function_signature_to_4byte_selector("Panic(uint256)")] = (
            "Panic",
            ["uint256"],
            ["code"],
        )

    def decode(self, data: bytes) -> str:
        """A readable name for the revert (hex fallback for unknown errors)."""
        if len(data) < 4:
            return "execution reverted without data"
        known = self._errors.get(data[:4])
        if known is None:
            return f"unknown error 0x{data[:4].hex()} ({len(data)} bytes)"
        error = self.decode_error(data)
        if error is None:  # malformed revert data
            return f"{known[0]}(<undecodable>)"
        args = ", ".join(f"{n}={_show(v)}" for n, v in error.args.items())
        return f"{error.name}({args})"

    def decode_error(self, data: bytes) -> DecodedError | None:
        """The error's name and arguments, or None (no data, unknown or malformed)."""
        known = self._errors.get(data[:4]) if len(data) >= 4 else None
        if known is None:
            return None
        name, types, names = known
        try:
            values = abi_decode(types, data[4:])
        except Exception:  # malformed revert data
            return None
        return DecodedError(name, dict(zip(names, values, strict=True)))


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def revert_data(exc: BaseException) -> bytes | None:
    """The revert data carried by a web3 exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


class SimulationReverted(ChainError):
    """``eth_call`` of a claim reverted: final, the claim would revert on-chain (``error``: the
    decoded custom error, when the revert carried a known one)."""

    def __init__(self, reason: str, error: DecodedError | None = None) -> None:
        self.reason = reason
        self.error = error
        super().__init__(f"simulation reverted: {reason}")


class SettlementClient:
    """ClaimSettlement through an :class:`RpcPool`."""

    def __init__(self, rpc: RpcPool, address: str) -> None:
        self.rpc = rpc
        self.address = to_checksum_address(address)
        self._offline: Contract = Web3().eth.contract(
            address=self.address, abi=CLAIM_SETTLEMENT_ABI
        )
        self.decoder = RevertDecoder(CLAIM_SETTLEMENT_ABI)
        submit = next(e for e in CLAIM_SETTLEMENT_ABI if e.get("name") == "submitClaim")
        self._submit_types = [collapse_if_tuple(dict(i)) for i in submit["inputs"]]
        self._submit_selector = function_signature_to_4byte_selector(
            f"submitClaim({','.join(self._submit_types)})"
        )
        batched = next(e for e in CLAIM_SETTLEMENT_ABI if e.get("name") == "submitClaimsBatched")
        self._batched_types = [collapse_if_tuple(dict(i)) for i in batched["inputs"]]
        self._batched_selector = function_signature_to_4byte_selector(
            f"submitClaimsBatched({','.join(self._batched_types)})"
        )
        self._bound: dict[int, Contract] = {}
        self._pools: dict[int, int] = {}
        self._models: dict[int, tuple[bytes, int]] = {}
        self._registry: Contract | None = None
        paid = self._offline.events.ClaimPaid()
        denied = self._offline.events.ClaimDenied()
        self._paid_topic = bytes(Web3.keccak(text=paid.signature))
        self._denied_topic = bytes(Web3.keccak(text=denied.signature))

    def _contract(self, w3: Web3) -> Contract:
        contract = self._bound.get(id(w3))
        if contract is None:  # building a contract object parses the ABI: once per endpoint
            contract = self._bound[id(w3)] = w3.eth.contract(
                address=self.address, abi=CLAIM_SETTLEMENT_ABI
            )
        return contract

    def encode_submit(self, claim: tuple[Any, ...]) -> bytes:
        """Calldata of ``submitClaim(claim)``."""
        return self._submit_selector + abi_encode(self._submit_types, [claim])

    def encode_submit_batched(self, claims: list[tuple[Any, ...]]) -> bytes:
        """Calldata of ``submitClaimsBatched(claims)``."""
        return self._batched_selector + abi_encode(self._batched_types, [claims])

    def policy(self, policy_id: int) -> PolicyInfo:
        """The policy record (holder is the zero address if there is none)."""
        raw = self.rpc.call(lambda w3: self._contract(w3).functions.getPolicy(policy_id).call())
        holder, expiry, product_id, reserved, paid = raw
        return PolicyInfo(str(holder), int(expiry), int(product_id), int(reserved), int(paid))

    def product(self, product_id: int) -> ProductInfo:
        """The product record."""
        raw = self.rpc.call(lambda w3: self._contract(w3).functions.getProduct(product_id).call())
        model_id, pool_id, version, retired, payout, (comparison, output, threshold) = raw
        return ProductInfo(
            bytes(model_id),
            int(pool_id),
            int(version),
            bool(retired),
            int(payout),
            int(comparison),
            int(output),
            int(threshold),
        )

    def pool_of(self, policy_id: int) -> int:
        """The pool of an existing policy (0 if there is none); cached, since a policy's product
        and a product's pool never change."""
        pool = self._pools.get(policy_id)
        if pool is None:
            policy = self.policy(policy_id)
            if policy.holder == "0x" + "00" * 20:
                return 0
            pool = self._pools[policy_id] = self.product(policy.product_id).pool_id
        return pool

    def simulate(self, sender: str, data: bytes, gas: int | None = None) -> tuple[int, int]:
        """``eth_call`` the claim (with at most ``gas``, if given); ``(claimId, amount)`` or
        :class:`SimulationReverted`."""
        claim_id, amount = abi_decode(["uint256", "uint256"], self._call(sender, data, gas))
        return int(claim_id), int(amount)

    def simulate_batched(self, sender: str, data: bytes) -> list[int]:
        """``eth_call`` a ``submitClaimsBatched``: the claim ids, or :class:`SimulationReverted`
        (with the decoded error, for isolating the bad claim)."""
        (claim_ids,) = abi_decode(["uint256[]"], self._call(sender, data, None))
        return [int(c) for c in claim_ids]

    def _call(self, sender: str, data: bytes, gas: int | None) -> bytes:
        tx: dict[str, Any] = {"from": sender, "to": self.address, "data": "0x" + data.hex()}
        if gas is not None:
            tx["gas"] = gas
        try:
            raw = self.rpc.call(lambda w3: w3.eth.call(tx, "latest"))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            found = revert_data(exc)
            if found is None:
                raise SimulationReverted(str(exc)[:200]) from None
            raise SimulationReverted(
                self.decoder.decode(found), self.decoder.decode_error(found)
            ) from None
        return bytes(raw)

    def model_of(self, policy_id: int) -> tuple[bytes, int] | None:
        """``(modelId, version)`` of an existing policy's product (None if there is no such
        policy); cached, since neither a policy's product nor a product's model changes."""
        found = self._models.get(policy_id)
        if found is None:
            policy = self.policy(policy_id)
            if policy.holder == ZERO_ADDRESS:
                return None
            product = self.product(policy.product_id)
            found = self._models[policy_id] = (product.model_id, product.version)
        return found

    def batch_verifier(self, model_id: bytes, version: int) -> str | None:
        """The batch verifier the settlement's registry has for a model version (None: none)."""
        if self._registry is None:
            address = self.rpc.call(lambda w3: self._contract(w3).functions.registry().call())
            self._registry = Web3().eth.contract(
                address=to_checksum_address(address), abi=MODEL_REGISTRY_ABI
            )
        registry = self._registry
        call = registry.functions.getBatchVerifier(model_id, version)
        data = call._encode_transaction_data()
        raw = self.rpc.call(
            lambda w3: w3.eth.call({"to": registry.address, "data": data}, "latest")
        )
        ((verifier, _code_hash),) = abi_decode(["(address,bytes32)"], bytes(raw))
        verifier = to_checksum_address(verifier)
        return None if verifier == ZERO_ADDRESS else str(verifier)

    def revert_reason(self, receipt: TxReceipt) -> str:
        """Why a mined transaction reverted: it is replayed with ``eth_call`` on the state after
        its block (what it met, other transactions of that block included) and the revert data
        decoded (``ClaimSettlementRecordAlreadyClaimed(policyId=…, …)``)."""
        return self.revert_error(receipt)[0]

    def revert_error(self, receipt: TxReceipt) -> tuple[str, DecodedError | None]:
        """:meth:`revert_reason` and the decoded error (None when there is no known one)."""
        tx_hash = receipt["transactionHash"]
        block = int(receipt["blockNumber"])
        tx = self.rpc.call(lambda w3: w3.eth.get_transaction(tx_hash))
        call: dict[str, Any] = {
            "from": tx["from"],
            "to": tx["to"],
            "data": tx["input"],
            "gas": int(tx["gas"]),
            "value": int(tx.get("value", 0)),
        }
        try:
            self.rpc.call(lambda w3: w3.eth.call(call, block))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            found = revert_data(exc)
            if found is None:
                return str(exc)[:200], None
            return self.decoder.decode(found), self.decoder.decode_error(found)
        return "not reproducible by replaying it on the block's state", None

    def outcome(self, receipt: TxReceipt) -> ClaimOutcome | None:
        """The (first) ClaimPaid/ClaimDenied event this contract emitted in ``receipt``."""
        outcomes = self.outcomes(receipt)
        return outcomes[0] if outcomes else None

    def outcomes(self, receipt: TxReceipt) -> list[ClaimOutcome]:
        """Every ClaimPaid/ClaimDenied event this contract emitted in ``receipt``, in log order
        (a batch: one per claim, in claim order)."""
        out = []
        for entry in receipt["logs"]:
            if to_checksum_address(entry["address"]) != self.address or not entry["topics"]:
                continue
            topic = bytes(entry["topics"][0])
            if topic == self._paid_topic:
                a = self._offline.events.ClaimPaid().process_log(entry)["args"]
                out.append(
                    ClaimOutcome(True, int(a["claimId"]), int(a["amount"]), int(a["policyId"]))
                )
            elif topic == self._denied_topic:
                a = self._offline.events.ClaimDenied().process_log(entry)["args"]
                out.append(ClaimOutcome(False, int(a["claimId"]), 0, int(a["policyId"])))
        return out


def get_receipt(rpc: RpcPool, tx_hash: str) -> TxReceipt | None:
    """The receipt, or None while the transaction is not mined (or unknown)."""

    def fetch(w3: Web3) -> TxReceipt | None:
        try:
            return w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    return rpc.call(fetch)


def is_known(rpc: RpcPool, tx_hash: str) -> bool:
    """Whether the node knows the transaction (pending or mined)."""

    def fetch(w3: Web3) -> bool:
        try:
            w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    return rpc.call(fetch)


def send_raw(rpc: RpcPool, raw: bytes) -> Broadcast:
    """Broadcast; the node's answer classified (transport errors raise ChainUnavailable)."""

    def send(w3: Web3) -> Broadcast:
        try:
            w3.eth.send_raw_transaction(raw)
        except Web3RPCError as exc:
            return classify_broadcast_error(str(exc))
        return Broadcast.SENT

    return rpc.call(send)
