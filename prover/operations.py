"""Operator actions on a deployed zkcare (used by ``ape run manage``): typed and reusable.

Every action takes a :class:`Deployment` (the contracts of the connected chain, bound from
``deployments/<chain-id>.json``) and, when it sends transactions, the ape account that signs
them. Amounts are :class:`~decimal.Decimal` whole units of the asset (ether for ETH, the
token's ``decimals()`` otherwise); model outputs and thresholds are real numbers converted
with the registry's output scale (``value = raw / 2**outputScale``).

Before sending, each action checks what the chain would reject (unknown ids, wrong insurer,
missing role, unreserved funds, deadlines …) and raises one of this module's errors with a
readable message, so reverts are the exception; :func:`describe_failure` turns the ones that
remain (ape's decoded custom errors) into one line.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

from eth_utils import is_address, keccak, to_checksum_address

from prover.deploy import (
    DEPLOYMENTS_DIR,
    DIAGNOSTIC_MODEL_NAME,
    EVAL_MODEL_NAME,
    GUARDIAN_ROLE,
    REGISTRAR_ROLE,
    instance_layout,
    model_id,
)
from prover.exceptions import InvalidInput, ZkcareError

ETH = "0x0000000000000000000000000000000000000000"
INT128_MIN, INT128_MAX = -(2**127), 2**127 - 1
UINT128_MAX = 2**128 - 1
UINT40_MAX = 2**40 - 1
UINT64_MAX = 2**64 - 1
_EXACT = 200  # decimal digits for fixed-point products: no rounding below int128 x 2^128
#: ``model register`` sources naming a built-in bundle -> their model name.
BUILTIN_BUNDLES = {"diagnostic": DIAGNOSTIC_MODEL_NAME, "eval": EVAL_MODEL_NAME}
#: Minimal ERC-20 ABI for pools and bounties in tokens.
ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": name,
        "stateMutability": "view",
        "inputs": [{"name": n, "type": "address"} for n in args],
        "outputs": [{"name": "", "type": out}],
    }
    for name, args, out in (
        ("decimals", (), "uint8"),
        ("symbol", (), "string"),
        ("balanceOf", ("account",), "uint256"),
        ("allowance", ("owner", "spender"), "uint256"),
    )
] + [
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


class Comparison(IntEnum):
    """``ClaimSettlement.Comparison``: pay if the rule's output is at least / at most the
    threshold, or if it is the arg-max of all outputs (lowest index on ties)."""

    AT_LEAST = 0
    AT_MOST = 1
    ARG_MAX_IS = 2

    @property
    def symbol(self) -> str:
        return {Comparison.AT_LEAST: ">=", Comparison.AT_MOST: "<="}.get(self, "is the arg-max")

    @property
    def contract_name(self) -> str:
        """The Solidity enum member: ``AtLeast``, ``AtMost``, ``ArgMaxIs``."""
        return {0: "AtLeast", 1: "AtMost", 2: "ArgMaxIs"}[int(self)]


class PayoutRule(NamedTuple):
    """``ClaimSettlement.PayoutRule`` (a tuple, so it is the call argument as is): which output
    the rule reads, how, and the threshold in the model's fixed-point units (0 for ArgMaxIs)."""

    comparison: Comparison
    output: int
    threshold: int

    def describe(self, scale: int) -> str:
        """``output 0 <= 0 (raw 0)`` / ``class 3 is the arg-max of the outputs``."""
        if self.comparison is Comparison.ARG_MAX_IS:
            return f"class {self.output} is the arg-max of the outputs"
        return (
            f"output {self.output} {self.comparison.symbol} "
            f"{from_fixed(self.threshold, scale):g} (raw {self.threshold})"
        )


#: A decision model's only rule: its one output (the 0/1 decision, scale 0) is at least 1.
DECISION_RULE = PayoutRule(Comparison.AT_LEAST, 0, 1)


class ModelStatus(IntEnum):
    """``IModelRegistry.ModelStatus``."""

    UNREGISTERED = 0
    ACTIVE = 1
    REVOKED = 2


class BountyStatus(IntEnum):
    """``ResearchBounty.BountyStatus``."""

    NONE = 0
    OPEN = 1
    AWARDED = 2
    RECLAIMED = 3


# --- errors ----------------------------------------------------------------------------------


class NotDeployed(ZkcareError, LookupError):
    """The connected chain has no (live) zkcare deployment manifest."""

    def __init__(self, chain_id: int, path: Path, detail: str = "") -> None:
        self.chain_id = chain_id
        self.path = path
        if detail:
            msg = f"zkcare deployment in {path} is not on chain {chain_id} ({detail}); "
        else:
            msg = f"no zkcare deployment for chain {chain_id}; "
        super().__init__(msg + "run `ape run deploy all` first" + ("" if detail else f" ({path})"))


class InvalidArgument(InvalidInput):
    """An operator-supplied value is malformed or out of range; ``field`` names the parameter."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownEntity(InvalidArgument, LookupError):
    """A pool, product, policy, bounty or model version that does not exist on chain."""

    def __init__(self, kind: str, ident: object, field: str | None = None, hint: str = "") -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"unknown {kind} {ident}" + (f" ({hint})" if hint else ""), field)


class NotPermitted(ZkcareError, PermissionError):
    """The account lacks the role or ownership the action needs."""


class OperationRefused(ZkcareError, RuntimeError):
    """The chain's current state forbids the action (checked before sending)."""


# --- values ----------------------------------------------------------------------------------


def parse_decimal(text: str | Decimal, what: str = "amount", field: str | None = None) -> Decimal:
    """A positive, finite decimal (``"1.5"``), or :class:`InvalidArgument`."""
    try:
        value = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise InvalidArgument(f"{what} {text!r} is not a number", field) from exc
    if not value.is_finite() or value <= 0:
        raise InvalidArgument(f"{what} {text} must be a positive number", field)
    return value


def to_raw(amount: Decimal, decimals: int, what: str = "amount", field: str | None = None) -> int:
    """Whole units -> base units (``1.5`` ETH -> ``1.5e18`` wei); at most ``decimals`` places."""
    value = parse_decimal(amount, what, field)
    _, digits, exponent = value.as_tuple()  # exact: no context rounding of long amounts
    if not isinstance(exponent, int):  # NaN/Infinity: excluded by parse_decimal
        raise InvalidArgument(f"{what} {amount} must be a finite number", field)
    mantissa, shift = int("".join(map(str, digits))), exponent + decimals
    if shift < 0 and mantissa % 10**-shift:
        raise InvalidArgument(f"{what} {amount} has more than {decimals} decimal places", field)
    raw = mantissa * 10**shift if shift >= 0 else mantissa // 10**-shift
    if raw > UINT128_MAX:
        raise InvalidArgument(f"{what} {amount} is too large (over 2^128 base units)", field)
    return raw


def parse_amount(text: str, decimals: int) -> int:
    """``"1.5"`` with 18 decimals -> ``1.5e18``; rejects negatives, zero and excess precision."""
    return to_raw(parse_decimal(text), decimals)


def format_units(raw: int, decimals: int) -> str:
    """Base units -> a plain decimal string without exponent or trailing zeros."""
    text = f"{Decimal(raw).scaleb(-decimals):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def checksum(address: str, field: str | None = None) -> str:
    """Validate and checksum an address."""
    if not isinstance(address, str) or not is_address(address):
        raise InvalidArgument(f"{address!r} is not an Ethereum address", field)
    return str(to_checksum_address(address))


def to_fixed(value: float | Decimal, scale: int, what: str, field: str | None = None) -> int:
    """A real number -> the nearest signed fixed-point integer with ``scale`` fractional bits."""
    number = Decimal(str(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise InvalidArgument(f"{what} must be a finite number, got {value}", field)
    with localcontext(prec=_EXACT):
        fixed = int((number * (1 << scale)).to_integral_value())
    if not INT128_MIN <= fixed <= INT128_MAX:
        raise InvalidArgument(
            f"{what} {value} does not fit int128 at the model's scale 2^-{scale}", field
        )
    return fixed


def from_fixed(raw: int, scale: int) -> float:
    """A signed fixed-point integer -> float."""
    return raw / (1 << scale)


def payout_rule(
    scale: int,
    pay_if: str | None = None,
    comparison: Comparison | None = None,
    threshold: float | None = None,
    *,
    output: int | None = None,
    pay_if_class: int | None = None,
    output_count: int = 1,
    model: str = "the model",
) -> PayoutRule:
    """A product's :class:`PayoutRule` from exactly one of three forms.

    - ``pay_if`` is for the diagnostic model, whose output 0 is the logit of P(benign):
      ``malignant`` pays when the logit is ``<= 0`` (the project's convention), ``benign`` when
      it is ``> 0`` (``>=`` one fixed-point unit).
    - ``pay_if_class`` K: ArgMaxIs on K, pays when output K is the largest (a classifier's
      predicted class; the lowest index wins a tie).
    - ``comparison`` (AtLeast/AtMost) and ``threshold`` (model units, converted with ``scale``)
      on output ``output`` (default 0).

    Output and class indices must be below ``output_count``, the version's number of outputs
    (``model`` names it in the error).
    """
    forms = [
        name
        for name, given in (
            ("--pay-if", pay_if is not None),
            ("--pay-if-class", pay_if_class is not None),
            (
                "--comparison/--threshold/--output",
                comparison is not None or threshold is not None or output is not None,
            ),
        )
        if given
    ]
    if len(forms) > 1:
        raise InvalidArgument(
            f"use only one of --pay-if, --pay-if-class, --comparison/--threshold, "
            f"not {' and '.join(forms)}",
            "pay_if" if pay_if is not None else "pay_if_class",
        )
    outputs = f"{model} has {output_count} output{'s' if output_count != 1 else ''}"
    outputs += f" (0..{output_count - 1})" if output_count > 1 else " (0)"
    if pay_if == "malignant":
        return PayoutRule(Comparison.AT_MOST, 0, 0)
    if pay_if == "benign":
        return PayoutRule(Comparison.AT_LEAST, 0, 1)
    if pay_if is not None:
        raise InvalidArgument(f"pay-if must be 'malignant' or 'benign', got {pay_if!r}", "pay_if")
    if pay_if_class is not None:
        if not 0 <= pay_if_class < output_count:
            raise InvalidArgument(
                f"invalid payout rule ArgMaxIs(class {pay_if_class}): {outputs}", "pay_if_class"
            )
        return PayoutRule(Comparison.ARG_MAX_IS, pay_if_class, 0)
    if comparison is None or threshold is None:
        raise InvalidArgument(
            "give --pay-if, --pay-if-class, or both --comparison and --threshold", "pay_if"
        )
    cmp = Comparison(comparison)
    if cmp is Comparison.ARG_MAX_IS:
        raise InvalidArgument("for an arg-max rule give --pay-if-class, not --comparison", "pay_if")
    index = 0 if output is None else output
    if not 0 <= index < output_count:
        raise InvalidArgument(
            f"invalid payout rule {cmp.contract_name}(output {index}): {outputs}", "output"
        )
    return PayoutRule(cmp, index, to_fixed(threshold, scale, "threshold", "threshold"))


def min_metric(min_accuracy: float, size: int) -> int:
    """The bounty's ``minMetric``: patients of ``size`` to classify right, rounded up."""
    if not (math.isfinite(min_accuracy) and 0 <= min_accuracy <= 1):
        raise InvalidArgument(
            f"min accuracy must be within [0, 1], got {min_accuracy}", "min_accuracy"
        )
    with localcontext(prec=_EXACT):
        return math.ceil(Decimal(str(min_accuracy)) * size)


def utc(timestamp: int) -> str:
    """A UNIX timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def describe_failure(exc: Exception) -> str:
    """One line for an ape failure: a decoded custom error as ``Name(arg=value, ...)``."""
    from ape.exceptions import ContractLogicError, CustomError

    if isinstance(exc, CustomError):
        names = [i.name for i in exc.abi.inputs if i.name in exc.inputs] or list(exc.inputs)
        args = ", ".join(
            f"{n}={_hex(v) if isinstance(v, bytes) else v}"
            for n, v in ((n, exc.inputs[n]) for n in names)
        )
        return f"transaction reverted: {exc.name}({args})"
    if isinstance(exc, ContractLogicError):
        message = exc.message
        if isinstance(message, bytes):  # undecoded revert data
            message = _hex(message)
        return f"transaction reverted: {message or 'no reason given'}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no detail'}"


# --- views -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """ETH or an ERC-20 token."""

    address: str
    symbol: str
    decimals: int

    @property
    def is_eth(self) -> bool:
        return self.address == ETH

    def format(self, raw: int) -> str:
        return f"{format_units(raw, self.decimals)} {self.symbol}"


@dataclass(frozen=True)
class ModelView:
    """A model version as the registry records it."""

    name: str
    model_id: bytes
    version: int
    status: ModelStatus
    verifier: str
    instance_count: int
    input_index: int
    output_index: int
    output_count: int
    output_scale: int
    verifier_code_hash: bytes
    onnx_sha256: bytes
    vk_sha256: bytes
    #: The batch verifier registered next to the verifier (``None``: claims settle one by one).
    batch_verifier: str | None = None

    def describe(self) -> str:
        first, n = self.output_index, self.output_count
        outputs = f"output {first}" if n == 1 else f"outputs {first}..{first + n - 1}"
        batch = f", batch verifier {self.batch_verifier}" if self.batch_verifier else ""
        from prover.zk.commitment import PROOF_COMMITMENT_INDEX

        commitment = (
            "input committed in the proof"
            if self.input_index == PROOF_COMMITMENT_INDEX
            else f"input {self.input_index}"
        )
        return (
            f"{self.name} v{self.version}: {self.status.name.lower()}, verifier {self.verifier}"
            f"{batch}, layout {self.instance_count} instances ({commitment}, "
            f"{outputs}), output scale 2^-{self.output_scale}, "
            f"vk sha256 {self.vk_sha256.hex()[:16]}…"
        )


@dataclass(frozen=True)
class PoolView:
    """A pool record."""

    id: int
    insurer: str
    asset: Asset
    balance: int
    reserved: int

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def describe(self) -> str:
        a = self.asset
        return (
            f"pool {self.id}: {a.symbol}, insurer {self.insurer}, "
            f"balance {a.format(self.balance)}, reserved {a.format(self.reserved)}, "
            f"available {a.format(self.available)}"
        )


@dataclass(frozen=True)
class ProductView:
    """A product record (threshold decoded with the model's output scale)."""

    id: int
    pool_id: int
    model: str
    version: int
    comparison: Comparison
    output: int
    threshold_raw: int
    output_scale: int
    payout: int
    retired: bool
    asset: Asset
    #: A decision model's compiled rule (``output[0] >= 1.4``), from the manifest; else None.
    decision: str | None = None

    @property
    def rule(self) -> PayoutRule:
        return PayoutRule(self.comparison, self.output, self.threshold_raw)

    @property
    def threshold(self) -> float:
        return from_fixed(self.threshold_raw, self.output_scale)

    def describe(self) -> str:
        return (
            f"product {self.id}: pool {self.pool_id}, {self.model} v{self.version}, "
            f"pays {self.asset.format(self.payout)} if "
            + (
                f"decision == 1 (in the circuit: {self.decision})"
                if self.decision is not None and self.rule == DECISION_RULE
                else self.rule.describe(self.output_scale)
            )
            + (", retired" if self.retired else "")
        )


@dataclass(frozen=True)
class PolicyView:
    """A policy record."""

    id: int
    product_id: int
    holder: str
    expiry: int
    reserved: int
    paid: int
    asset: Asset

    def describe(self) -> str:
        return (
            f"policy {self.id}: product {self.product_id}, holder {self.holder}, coverage left "
            f"{self.asset.format(self.reserved)}, paid {self.asset.format(self.paid)}, "
            f"expires {utc(self.expiry)}"
        )


@dataclass(frozen=True)
class BountyView:
    """A bounty record."""

    id: int
    sponsor: str
    status: BountyStatus
    asset: Asset
    amount: int
    model: str
    version: int
    min_metric: int
    output_scale: int
    deadline: int
    winner: str
    context_scale: int

    def describe(self) -> str:
        text = (
            f"bounty {self.id}: {self.status.name.lower()}, {self.asset.format(self.amount)}, "
            f"sponsor {self.sponsor}, {self.model} v{self.version}, at least "
            f"{from_fixed(self.min_metric, self.output_scale):g} benchmark patients right, "
            f"deadline {utc(self.deadline)}"
        )
        return text + (f", winner {self.winner}" if self.status is BountyStatus.AWARDED else "")


# --- the deployment --------------------------------------------------------------------------


@dataclass
class Deployment:
    """The zkcare contracts on the connected chain."""

    path: Path
    data: dict[str, Any]
    registry: Any
    settlement: Any
    bounty: Any
    _assets: dict[str, Asset] = field(default_factory=dict, repr=False)
    _scales: dict[tuple[bytes, int], int] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, directory: Path | None = None) -> Deployment:
        """Read the manifest of the connected chain and bind the contracts."""
        from ape import chain, project

        chain_id = int(chain.provider.chain_id)
        path = (directory or DEPLOYMENTS_DIR) / f"{chain_id}.json"
        if not path.is_file():
            raise NotDeployed(chain_id, path)
        try:
            data = json.loads(path.read_text())
            contracts = data["contracts"]
        except (ValueError, KeyError) as exc:
            raise NotDeployed(chain_id, path, f"unreadable manifest: {exc}") from exc
        bound = []
        for name in ("ModelRegistry", "ClaimSettlement", "ResearchBounty"):
            address = contracts.get(name, {}).get("address")
            if not address:
                raise NotDeployed(chain_id, path, f"{name} is not recorded")
            if not bytes(chain.provider.get_code(address)):
                raise NotDeployed(chain_id, path, f"{name} has no code at {address}")
            bound.append(getattr(project, name).at(address))
        return cls(path, data, *bound)

    @property
    def chain_id(self) -> int:
        return int(self.data["chainId"])

    # -- models --

    def model_name(self, mid: bytes) -> str:
        """A model id's name from the manifest (or its hex)."""
        for name, entry in self.data.get("models", {}).items():
            if entry["modelId"].lower() == _hex(mid).lower():
                return str(name)
        return _hex(mid)

    def model(self, name: str, version: int | None = None, field: str = "model") -> ModelView:
        """``name`` at ``version`` (default: the version the manifest records) from the registry."""
        if version is None:
            entry = self.data.get("models", {}).get(name)
            if entry is None:
                known = ", ".join(sorted(self.data.get("models", {}))) or "none"
                raise UnknownEntity("model", repr(name), field, f"manifest knows: {known}")
            version = int(entry["version"])
        mid = model_id(name)
        m = self.registry.getModelVersion(mid, version)
        batch = str(self.registry.getBatchVerifier(mid, version).verifier)
        view = ModelView(
            name,
            mid,
            version,
            ModelStatus(int(m.status)),
            str(m.verifier),
            int(m.instanceCount),
            int(m.inputIndex),
            int(m.outputIndex),
            int(m.outputCount),
            int(m.outputScale),
            bytes(m.verifierCodeHash),
            bytes(m.onnxSha256),
            bytes(m.vkSha256),
            None if int(batch, 16) == 0 else batch,
        )
        if view.status is ModelStatus.ACTIVE:
            self._scales[(mid, version)] = view.output_scale
        return view

    def active_model(
        self, name: str, version: int | None = None, field: str = "model"
    ) -> ModelView:
        """Like :meth:`model`, but the version must be registered and not revoked."""
        view = self.model(name, version, field)
        if view.status is ModelStatus.UNREGISTERED:
            raise UnknownEntity("model version", f"{name} v{view.version}", field)
        if view.status is ModelStatus.REVOKED:
            raise OperationRefused(f"model {name} v{view.version} is revoked")
        if self.registry.stopped():
            raise OperationRefused("the model registry is stopped (permanently)")
        return view

    def model_versions(self, name: str) -> list[ModelView]:
        """Every registered version of ``name`` (scans 1, 2, … past the manifest's version)."""
        recorded = int(self.data.get("models", {}).get(name, {}).get("version", 0))
        views: list[ModelView] = []
        version = 1
        while True:
            view = self.model(name, version)
            if view.status is ModelStatus.UNREGISTERED and version > recorded:
                return views
            if view.status is not ModelStatus.UNREGISTERED:
                views.append(view)
            version += 1

    def decision(self, view: ModelView) -> dict[str, Any] | None:
        """The rule compiled into ``view``'s circuit, if it is a decision model (its only output
        is 0/1): recorded in the manifest at registration, for this version's verifying key."""
        entry = self.data.get("models", {}).get(view.name, {})
        rule = entry.get("decisions", {}).get(str(view.version))
        if not isinstance(rule, dict) or rule.get("vkSha256") != view.vk_sha256.hex():
            return None
        return rule

    def output_scale(self, mid: bytes, version: int) -> int:
        """A model version's output scale (cached)."""
        if (mid, version) not in self._scales:
            m = self.registry.getModelVersion(mid, version)
            self._scales[(mid, version)] = int(m.outputScale)
        return self._scales[(mid, version)]

    # -- assets --

    def asset(self, address: str, field: str | None = None) -> Asset:
        """ETH (the zero address) or the ERC-20 at ``address``."""
        address = checksum(address, field)
        if address == ETH:
            return Asset(ETH, "ETH", 18)
        if address not in self._assets:
            from ape import chain

            if not bytes(chain.provider.get_code(address)):
                raise InvalidArgument(f"no contract at {address} (expected an ERC-20)", field)
            token = self.token(address)
            try:
                decimals = int(token.decimals())
            except Exception as exc:  # noqa: BLE001 - any failure means "not an ERC-20"
                raise InvalidArgument(
                    f"{address} is not an ERC-20 (decimals() failed)", field
                ) from exc
            try:
                symbol = str(token.symbol())
            except Exception:  # noqa: BLE001 - symbol() is optional in ERC-20
                symbol = f"token {address}"
            self._assets[address] = Asset(address, symbol, decimals)
        return self._assets[address]

    def asset_or_raw(self, address: str) -> Asset:
        """:meth:`asset`, or base units of a contract that does not answer ``decimals()``."""
        try:
            return self.asset(address)
        except InvalidArgument:
            return Asset(str(address), f"base units of {address}", 0)

    def token(self, address: str) -> Any:
        """An ape contract instance for an ERC-20 (minimal ABI)."""
        from ape import Contract

        return Contract(address, abi=ERC20_ABI)

    # -- records --

    def pool(self, pool_id: int, field: str | None = "pool_id") -> PoolView:
        """A pool, or :class:`UnknownEntity`."""
        p = self.settlement.getPool(pool_id)
        if str(p.insurer) == ETH:
            raise UnknownEntity("pool", pool_id, field)
        return PoolView(
            pool_id,
            str(p.insurer),
            self.asset_or_raw(str(p.asset)),
            int(p.balance),
            int(p.reserved),
        )

    def product(self, product_id: int, field: str | None = "product_id") -> ProductView:
        """A product, or :class:`UnknownEntity`."""
        p = self.settlement.getProduct(product_id)
        if int(p.poolId) == 0:
            raise UnknownEntity("product", product_id, field)
        mid, version = bytes(p.modelId), int(p.version)
        name = self.model_name(mid)
        compiled = self.data.get("models", {}).get(name, {}).get("decisions", {}).get(str(version))
        return ProductView(
            product_id,
            int(p.poolId),
            name,
            version,
            Comparison(int(p.rule.comparison)),
            int(p.rule.output),
            int(p.rule.threshold),
            self.output_scale(mid, version),
            int(p.payout),
            bool(p.retired),
            self.pool(int(p.poolId), None).asset,
            compiled.get("rule") if isinstance(compiled, dict) else None,
        )

    def policy(self, policy_id: int, field: str | None = "policy_id") -> PolicyView:
        """A policy, or :class:`UnknownEntity`."""
        p = self.settlement.getPolicy(policy_id)
        if str(p.holder) == ETH:
            raise UnknownEntity("policy", policy_id, field)
        product = self.product(int(p.productId), None)
        return PolicyView(
            policy_id,
            int(p.productId),
            str(p.holder),
            int(p.expiry),
            int(p.reserved),
            int(p.paid),
            product.asset,
        )

    def bounty_record(self, bounty_id: int, field: str | None = "bounty_id") -> BountyView:
        """A bounty, or :class:`UnknownEntity`."""
        b = self.bounty.getBounty(bounty_id)
        status = BountyStatus(int(b.status))
        if status is BountyStatus.NONE:
            raise UnknownEntity("bounty", bounty_id, field)
        mid, version = bytes(b.modelId), int(b.version)
        return BountyView(
            bounty_id,
            str(b.sponsor),
            status,
            self.asset_or_raw(str(b.asset)),
            int(b.amount),
            self.model_name(mid),
            version,
            int(b.minMetric),
            self.output_scale(mid, version),
            int(b.deadline),
            str(b.winner),
            int(b.contextScale),
        )

    def _all(self, get: Callable[[int, str | None], Any]) -> Iterator[Any]:
        ident = 1
        while True:
            try:
                yield get(ident, None)
            except UnknownEntity:
                return
            ident += 1

    def pools(self) -> list[PoolView]:
        return list(self._all(self.pool))

    def products(self) -> list[ProductView]:
        return list(self._all(self.product))

    def policies(self) -> list[PolicyView]:
        return list(self._all(self.policy))

    def bounties(self) -> list[BountyView]:
        return [self.bounty_record(i, None) for i in range(1, int(self.bounty.bountyCount()) + 1)]


# --- checks ----------------------------------------------------------------------------------


def _now() -> int:
    """The next block's timestamp (for new expiries and deadlines)."""
    from ape import chain

    return int(chain.pending_timestamp)


def _head_time() -> int:
    """The latest block's timestamp: what gas estimation sees (for "has it passed?" checks)."""
    from ape import chain

    return int(chain.blocks.head.timestamp)


def _require_insurer(pool: PoolView, account: Any) -> None:
    if str(account.address) != pool.insurer:
        raise NotPermitted(
            f"{account.address} is not the insurer of pool {pool.id} "
            f"(the insurer is {pool.insurer})"
        )


def _require_role(registry: Any, role: bytes, role_name: str, account: Any) -> None:
    if not registry.hasRole(role, account.address):
        raise NotPermitted(f"{account.address} lacks {role_name} on the ModelRegistry")


def _pull_in(d: Deployment, account: Any, asset: Asset, raw: int, spender: Any) -> int:
    """Check the account can pay ``raw`` of ``asset``; approve ``spender`` for tokens.

    Returns the ``value`` to attach to the call (ETH) or 0.
    """
    if asset.is_eth:
        balance = int(account.balance)
        if balance < raw:
            raise OperationRefused(
                f"{account.address} holds {asset.format(balance)}, less than {asset.format(raw)}"
            )
        return raw
    token = d.token(asset.address)
    balance = int(token.balanceOf(account.address))
    if balance < raw:
        raise OperationRefused(
            f"{account.address} holds {asset.format(balance)}, less than {asset.format(raw)}"
        )
    if int(token.allowance(account.address, spender.address)) < raw:
        token.approve(spender.address, raw, sender=account)
    return 0


def _event(receipt: Any, contract: Any, name: str) -> Any:
    return receipt.decode_logs(getattr(contract, name))[0]


# --- models (registrar, guardian) ------------------------------------------------------------


def resolve_bundle(
    source: str, name: str | None, *, skip_checks: bool = False
) -> tuple[Any, str, str, tuple[int, int, int, int, int]]:
    """``diagnostic`` / ``eval`` / a bundle directory -> (bundle, model name, manifest key, layout).

    Built-in bundles are built (or reused from the cache) exactly as ``ape run deploy all``
    does, so their verifiers are the deployed ones. The layout is
    :func:`prover.deploy.instance_layout`. A model bundle must pass
    :func:`prover.models.build.check_bundle` (fidelity passed, layout matching its real sample
    proof) unless ``skip_checks``.
    """
    from prover.exceptions import CircuitError
    from prover.models.build import check_bundle
    from prover.zk.circuit import load_bundle

    if source in BUILTIN_BUNDLES:
        from prover.models.bounty_eval import build_eval_bundle

        if source == "diagnostic":  # the decision bundle, as deploy all registers it
            from prover.models.breast_cancer import build_decision_bundle

            bundle = build_decision_bundle()
        else:  # a model package too: its card is checked like any bundle's
            bundle = build_eval_bundle()
        if not skip_checks:
            check_bundle(bundle)
        return (
            bundle,
            name or BUILTIN_BUNDLES[source],
            bundle.contract_name,
            instance_layout(bundle),
        )
    path = Path(source)
    if not path.is_dir():
        raise InvalidArgument(
            f"{source!r} is neither a bundle directory nor one of: {', '.join(BUILTIN_BUNDLES)}",
            "source",
        )
    if not name:
        raise InvalidArgument("a bundle directory needs --name (e.g. acme/model)", "name")
    try:
        bundle = load_bundle(path)
        bundle.verifier_artifact  # noqa: B018 - checks Verifier.json is there
        if not skip_checks:
            check_bundle(bundle)
        layout = instance_layout(bundle)
    except (CircuitError, KeyError, ValueError) as exc:
        raise InvalidArgument(f"{source} is not a usable circuit bundle: {exc}", "source") from exc
    key = f"{bundle.contract_name}-{bundle.manifest['sha256']['vk'][:12]}"
    return bundle, name, key, layout


def register_model(
    d: Deployment,
    account: Any,
    source: str,
    version: int,
    name: str | None = None,
    log: Callable[[str], None] = print,
    *,
    skip_checks: bool = False,
) -> tuple[ModelView, bool]:
    """Deploy ``source``'s verifier (unless current) and register it as ``name`` v``version``.

    When the bundle has a batch verifier (its manifest's ``batch_verifier`` section), that is
    deployed and registered next to it (also for a version registered earlier without one);
    a bundle whose build could not make one registers only the single verifier and logs why.
    Returns the registry's view and whether a model registration was sent (``False``: the same
    verifying key was already registered under that version). Updates the manifest.
    """
    from prover.deploy import Deployer, batch_verifier_container, verifier_container

    if version < 1 or version > 2**32 - 1:
        raise InvalidArgument(f"version must be within [1, 2^32), got {version}", "version")
    bundle, name, key, layout = resolve_bundle(source, name, skip_checks=skip_checks)
    if skip_checks:
        log(
            "WARNING: bundle checks skipped (--unsafe-skip-bundle-checks): the layout and "
            "fidelity of this bundle were NOT checked against a real proof"
        )
    current = d.model(name, version)
    vk = bytes.fromhex(bundle.manifest["sha256"]["vk"])
    if current.status is ModelStatus.ACTIVE and current.vk_sha256 != vk:
        raise OperationRefused(
            f"model {name} v{version} is registered with another verifying key; use a new version"
        )
    if current.status is ModelStatus.REVOKED:
        raise OperationRefused(f"model {name} v{version} is revoked; use a new version")
    if current.status is ModelStatus.ACTIVE:
        log(f"model {name} v{version}: already registered with this verifying key")
        if current.batch_verifier is None and batch_verifier_container(bundle) is not None:
            _require_role(d.registry, REGISTRAR_ROLE, "REGISTRAR_ROLE", account)
            _register_batch(d, Deployer.open(account, d.path.parent, log), bundle, name, version)
            return d.model(name, version), False
        return current, False
    _require_role(d.registry, REGISTRAR_ROLE, "REGISTRAR_ROLE", account)
    if d.registry.stopped():
        raise OperationRefused("the model registry is stopped (permanently)")
    deployer = Deployer.open(account, d.path.parent, log)
    container = verifier_container(bundle)
    # Reuse a recorded verifier with the same creation code (e.g. a copy of a built-in bundle).
    init = "0x" + keccak(bytes(container.contract_type.deployment_bytecode.to_bytes())).hex()
    contracts = deployer.data["contracts"]
    key = next((k for k, e in sorted(contracts.items()) if e.get("initCodeHash") == init), key)
    verifier = deployer.contract(key, container)
    sent = deployer.register_model(
        d.registry, name, version, verifier, bundle, layout, defer_to_newer=False
    )
    _register_batch(d, deployer, bundle, name, version)
    _check_on_chain(d, bundle, name, version, log)
    return d.model(name, version), sent


def _register_batch(d: Deployment, deployer: Any, bundle: Any, name: str, version: int) -> None:
    """Deploy (or reuse a recorded copy of) the bundle's batch verifier and register it."""
    from prover.deploy import batch_verifier_container

    container = batch_verifier_container(bundle)
    key = None
    if container is not None:
        creation = bytes(container.contract_type.deployment_bytecode.to_bytes())
        init = "0x" + keccak(creation).hex()
        contracts = deployer.data["contracts"]
        manifest = bundle.manifest
        default = f"{manifest['batch_verifier']['contract']}-{manifest['sha256']['vk'][:12]}"
        key = next(
            (k for k, e in sorted(contracts.items()) if e.get("initCodeHash") == init), default
        )
    deployer.register_batch_verifier(d.registry, name, version, bundle, key=key)
    d.data = deployer.data


def _check_on_chain(d: Deployment, bundle: Any, name: str, version: int, log: Any) -> None:
    """Verify the bundle's real sample proof through the registry (``eth_call``)."""
    from prover.models.card import ModelCard
    from prover.zk.proof import Proof

    if bundle.card is None:
        return
    card = ModelCard.of(bundle)
    proof = Proof.load(bundle.path / card.instance_layout.checked_against)
    try:
        d.registry.verify.call(model_id(name), version, proof.proof, list(proof.instances))
    except Exception as exc:  # ape raises ContractLogicError subclasses
        raise OperationRefused(
            f"model {name} v{version}: the registry rejects the bundle's own sample proof "
            f"({describe_failure(exc)})"
        ) from exc
    log(
        f"model {name} v{version}: sample proof ({len(proof.instances)} instances) verified "
        "through the registry"
    )


def revoke_model(d: Deployment, account: Any, name: str, version: int) -> ModelView:
    """Tombstone ``name`` v``version`` for ever (``GUARDIAN_ROLE``)."""
    view = d.model(name, version)
    if view.status is ModelStatus.UNREGISTERED:
        raise UnknownEntity("model version", f"{name} v{version}", "version")
    if view.status is ModelStatus.REVOKED:
        raise OperationRefused(f"model {name} v{version} is already revoked")
    _require_role(d.registry, GUARDIAN_ROLE, "GUARDIAN_ROLE", account)
    d.registry.revokeModel(view.model_id, version, sender=account)
    return d.model(name, version)


# --- pools, hospitals (insurer) --------------------------------------------------------------


def create_pool(d: Deployment, account: Any, token: str | None = None) -> PoolView:
    """Create a pool in ETH or ``token``; the account becomes its insurer."""
    asset = d.asset(token, "token") if token else d.asset(ETH)
    receipt = d.settlement.createPool(asset.address, sender=account)
    return d.pool(int(_event(receipt, d.settlement, "PoolCreated").poolId))


def fund_pool(d: Deployment, account: Any, pool_id: int, amount: Decimal) -> PoolView:
    """Add ``amount`` to a pool (anyone may fund; tokens are approved first)."""
    pool = d.pool(pool_id)
    raw = to_raw(amount, pool.asset.decimals, "amount", "amount")
    value = _pull_in(d, account, pool.asset, raw, d.settlement)
    d.settlement.fundPool(pool_id, raw, value=value, sender=account)
    return d.pool(pool_id)


def withdraw_pool(
    d: Deployment, account: Any, pool_id: int, amount: Decimal, to: str | None = None
) -> PoolView:
    """Withdraw unreserved funds of the account's pool to ``to`` (default: the account)."""
    pool = d.pool(pool_id)
    _require_insurer(pool, account)
    raw = to_raw(amount, pool.asset.decimals, "amount", "amount")
    if raw > pool.available:
        raise OperationRefused(
            f"pool {pool_id} has {pool.asset.format(pool.available)} unreserved, "
            f"less than {pool.asset.format(raw)}"
        )
    recipient = checksum(to, "to") if to else str(account.address)
    d.settlement.withdrawFromPool(pool_id, raw, recipient, sender=account)
    return d.pool(pool_id)


def trust_hospital(
    d: Deployment, account: Any, pool_id: int, hospital: str, trusted: bool = True
) -> bool:
    """Trust (or stop trusting) a hospital's attestations for the account's pool."""
    pool = d.pool(pool_id)
    _require_insurer(pool, account)
    address = checksum(hospital, "address")
    d.settlement.setHospitalTrust(pool_id, address, trusted, sender=account)
    return bool(d.settlement.isHospitalTrusted(pool_id, address))


# --- products, policies (insurer) ------------------------------------------------------------


def create_product(
    d: Deployment,
    account: Any,
    pool_id: int,
    payout: Decimal,
    *,
    model: str = DIAGNOSTIC_MODEL_NAME,
    version: int | None = None,
    pay_if: str | None = None,
    comparison: Comparison | None = None,
    threshold: float | None = None,
    output: int | None = None,
    pay_if_class: int | None = None,
) -> ProductView:
    """Define a product on the account's pool: pay ``payout`` when the outputs meet the rule
    (see :func:`payout_rule`; indices are checked against the version's output count).

    On a decision model (``model build --decide``; see :meth:`Deployment.decision`) the rule
    defaults to, and must be, :data:`DECISION_RULE`: pay iff the circuit's decision is 1. On the
    built-in diagnostic decision model ``pay_if="malignant"`` (the rule its circuit holds) is
    that rule too; ``benign`` is refused."""
    pool = d.pool(pool_id)
    _require_insurer(pool, account)
    view = d.active_model(model, version, "model_name")
    if pay_if is not None and model != DIAGNOSTIC_MODEL_NAME:
        raise InvalidArgument(
            "--pay-if reads the diagnostic model's logit; "
            f"give --comparison/--threshold for {model}",
            "pay_if",
        )
    decision = d.decision(view)
    given = (pay_if, comparison, threshold, output, pay_if_class) != (None,) * 5
    only_pay_if = (comparison, threshold, output, pay_if_class) == (None,) * 4
    if decision is not None and (not given or (only_pay_if and _pays_if(decision, pay_if))):
        rule = DECISION_RULE
    else:
        rule = payout_rule(
            view.output_scale,
            pay_if,
            comparison,
            threshold,
            output=output,
            pay_if_class=pay_if_class,
            output_count=view.output_count,
            model=f"{view.name} v{view.version}",
        )
    if decision is not None and rule != DECISION_RULE:
        raise InvalidArgument(
            f"{view.name} v{view.version} is a decision model (its circuit pays when "
            f"{decision['rule']}; its only output is 0/1): create the product without a rule "
            "(pay iff decision == 1)",
            "pay_if",
        )
    raw = to_raw(payout, pool.asset.decimals, "payout", "payout")
    receipt = d.settlement.createProduct(
        pool_id, view.model_id, view.version, tuple(int(v) for v in rule), raw, sender=account
    )
    return d.product(int(_event(receipt, d.settlement, "ProductCreated").productId))


def _pays_if(decision: dict[str, Any], pay_if: str | None) -> bool:
    """Whether ``--pay-if`` names the rule the diagnostic decision model compiled in
    (``malignant``: ``output[0] <= 0``), which then reads as :data:`DECISION_RULE`."""
    if pay_if != "malignant":
        return False
    return (decision.get("comparison"), decision.get("output"), decision.get("threshold")) == (
        "at_most",
        0,
        0.0,
    )


def retire_product(d: Deployment, account: Any, product_id: int) -> ProductView:
    """Retire a product: no new policies; existing ones stay claimable until they expire."""
    product = d.product(product_id)
    _require_insurer(d.pool(product.pool_id, None), account)
    if product.retired:
        raise OperationRefused(f"product {product_id} is already retired")
    d.settlement.retireProduct(product_id, sender=account)
    return d.product(product_id)


def issue_policy(
    d: Deployment, account: Any, product_id: int, holder: str, coverage: Decimal, days: float
) -> PolicyView:
    """Issue a policy to ``holder`` for ``days``; its coverage is reserved from the pool."""
    product = d.product(product_id)
    pool = d.pool(product.pool_id, None)
    _require_insurer(pool, account)
    if product.retired:
        raise OperationRefused(f"product {product_id} is retired")
    address = checksum(holder, "holder")
    if address == ETH:
        raise InvalidArgument("the holder cannot be the zero address", "holder")
    if not (math.isfinite(days) and days > 0):
        raise InvalidArgument(f"days must be a positive number, got {days}", "days")
    expiry = _now() + math.ceil(days * 86400)
    if expiry > UINT64_MAX:
        raise InvalidArgument(f"days {days} is too far in the future", "days")
    raw = to_raw(coverage, pool.asset.decimals, "coverage", "coverage")
    if raw > pool.available:
        raise OperationRefused(
            f"pool {pool.id} has {pool.asset.format(pool.available)} unreserved, less than the "
            f"coverage {pool.asset.format(raw)}; fund it first"
        )
    receipt = d.settlement.issuePolicy(product_id, address, raw, expiry, sender=account)
    return d.policy(int(_event(receipt, d.settlement, "PolicyIssued").policyId))


def release_policy(d: Deployment, account: Any, policy_id: int) -> tuple[PolicyView, int]:
    """After expiry and the claims' grace, return a policy's unused reservation to its pool
    (anyone may).

    Returns the policy after the release and the amount released (base units).
    """
    policy = d.policy(policy_id)
    grace_end = policy.expiry + int(d.settlement.CLAIM_GRACE_PERIOD())
    if (now := _head_time()) <= grace_end:
        raise OperationRefused(
            f"policy {policy_id} runs until {utc(policy.expiry)}, and claims attested by then may "
            f"land until {utc(grace_end)} (latest block: {utc(now)}); release it after that"
        )
    if policy.reserved == 0:
        raise OperationRefused(f"policy {policy_id} has nothing reserved (used or released)")
    d.settlement.releasePolicy(policy_id, sender=account)
    return d.policy(policy_id), policy.reserved


# --- bounties (sponsor) ----------------------------------------------------------------------


def create_bounty(
    d: Deployment,
    account: Any,
    amount: Decimal,
    min_accuracy: float,
    deadline_hours: float,
    token: str | None = None,
) -> BountyView:
    """Escrow a bounty for the evaluation circuit: its benchmark is the registered version's.

    ``min_accuracy`` becomes ``minMetric``, the number of benchmark patients to classify
    right (rounded up, never lower).
    """
    from prover.models.bounty_eval import benchmark_size, build_eval_bundle, context_scale

    if not (math.isfinite(deadline_hours) and deadline_hours > 0):
        raise InvalidArgument(
            f"deadline must be a positive number of hours, got {deadline_hours}", "deadline_hours"
        )
    asset = d.asset(token, "token") if token else d.asset(ETH)
    raw = to_raw(amount, asset.decimals, "amount", "amount")
    view = d.active_model(EVAL_MODEL_NAME)
    bundle = build_eval_bundle()
    if view.vk_sha256.hex() != bundle.manifest["sha256"]["vk"]:
        raise OperationRefused(
            f"{EVAL_MODEL_NAME} v{view.version} on chain is not this machine's evaluation circuit "
            "(verifying keys differ): register it with `ape run manage model register eval`"
        )
    metric = min_metric(min_accuracy, benchmark_size(bundle))
    deadline = _now() + math.ceil(deadline_hours * 3600)
    if deadline > UINT40_MAX:
        raise InvalidArgument(f"deadline {deadline_hours} h is too far away", "deadline_hours")
    params = (
        asset.address,
        raw,
        view.model_id,
        view.version,
        context_scale(bundle),
        metric,
        deadline,
    )
    value = _pull_in(d, account, asset, raw, d.bounty)
    receipt = d.bounty.createBounty(params, value=value, sender=account)
    return d.bounty_record(int(_event(receipt, d.bounty, "BountyCreated").bountyId))


def reclaim_bounty(d: Deployment, account: Any, bounty_id: int) -> BountyView:
    """Refund an unawarded bounty to its sponsor, from its deadline on (anyone may call).

    ``ResearchBounty`` has no cancel before the deadline: researchers rely on the escrow.
    """
    bounty = d.bounty_record(bounty_id)
    if bounty.status is BountyStatus.AWARDED:
        raise OperationRefused(f"bounty {bounty_id} was already awarded to {bounty.winner}")
    if bounty.status is BountyStatus.RECLAIMED:
        raise OperationRefused(f"bounty {bounty_id} was already reclaimed")
    if (now := _head_time()) < bounty.deadline:
        raise OperationRefused(
            f"bounty {bounty_id} is open until {utc(bounty.deadline)} (latest block: {utc(now)})"
            "; ResearchBounty has no cancel before the deadline (researchers rely on the "
            "escrow), reclaim it from then on"
        )
    d.bounty.reclaim(bounty_id, sender=account)
    return d.bounty_record(bounty_id)


# --- state -----------------------------------------------------------------------------------


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines or ["none"])]


def model_summary(d: Deployment, name: str | None = None) -> str:
    """Every registered version of the manifest's models (or of ``name``)."""
    names = [name] if name else sorted(d.data.get("models", {}))
    lines = [v.describe() for n in names for v in d.model_versions(n)]
    if name and not lines:
        raise UnknownEntity("model", repr(name), "name", "no version registered")
    return "\n".join(_section("models", lines))


def summary(d: Deployment) -> str:
    """A readable summary of the deployment and its state."""
    lines = [f"zkcare on chain {d.chain_id} ({d.path})"]
    lines += _section(
        "contracts",
        [f"{n:<24}{c['address']}" for n, c in sorted(d.data.get("contracts", {}).items())],
    )
    lines += model_summary(d).splitlines()
    if d.registry.stopped():
        lines.append("  (the registry is STOPPED: nothing verifies)")
    lines += _section("pools", [p.describe() for p in d.pools()])
    lines += _section("products", [p.describe() for p in d.products()])
    lines += _section("policies", [p.describe() for p in d.policies()])
    lines += _section("bounties", [b.describe() for b in d.bounties()])
    lines.append(f"claims settled: {int(d.settlement.claimCount())}")
    return "\n".join(lines)
