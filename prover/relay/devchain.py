"""A dev chain for the relay: deploy verifier, registry and settlement on anvil; issue policies.

Used by the relay's tests and benchmark (and handy for a local demo). Contract bytecode comes from
ape's build of ``contracts/`` (compiled on first use); each model's verifier is its circuit
bundle's own generated ``Verifier.json``, and its registry instance layout comes from the bundle's
model card (:func:`prover.deploy.instance_layout`). More models can be added to the same chain
(:meth:`DevChain.add_model`). Transactions are mined at once with anvil's ``evm_mine``, so set-up
does not wait for interval mining. Not for production chains.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from prover.anvil import DEV_PRIVATE_KEY
from prover.deploy import instance_layout
from prover.deploy import model_id as registry_model_id
from prover.exceptions import TransactionFailed
from prover.zk.circuit import Bundle

AT_LEAST, AT_MOST, ARG_MAX_IS = 0, 1, 2
ETH = "0x0000000000000000000000000000000000000000"


def compiled(name: str) -> tuple[list[dict[str, Any]], bytes]:
    """ABI and creation bytecode of a project contract (ape compiles if needed)."""
    solcx = Path(__file__).resolve().parents[2] / ".toolchain" / "solcx"
    if solcx.is_dir():  # the offline solc launcher `./zk setup` installs
        os.environ.setdefault("SOLCX_BINARY_PATH", str(solcx))
    from ape import project

    contract_type = getattr(project, name).contract_type
    data = contract_type.model_dump(mode="json", by_alias=True)
    bytecode = contract_type.deployment_bytecode.bytecode
    return data["abi"], bytes.fromhex(str(bytecode).removeprefix("0x"))


class DevSender:
    """Sends transactions from one key and mines them immediately (anvil only)."""

    def __init__(self, w3: Web3, account: LocalAccount) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = int(w3.eth.chain_id)

    def send_many(self, txs: Sequence[dict[str, Any]], gas: int | None = None) -> list[TxReceipt]:
        """Sign and send ``txs`` in order, mine one block, return the receipts (all status 1)."""
        nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        hashes = []
        for i, tx in enumerate(txs):
            full = {
                "from": self.account.address,
                "chainId": self.chain_id,
                "nonce": nonce + i,
                "maxPriorityFeePerGas": 10**9,
                "maxFeePerGas": 4 * base + 10**9,
                "value": 0,
                **tx,
            }
            if "gas" not in full:
                full["gas"] = gas or int(self.w3.eth.estimate_gas(full) * 1.3) + 50_000  # type: ignore[arg-type]
            signed = self.account.sign_transaction(full)
            hashes.append(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        receipts = [self.w3.eth.wait_for_transaction_receipt(h, timeout=30) for h in hashes]
        for receipt in receipts:
            if receipt["status"] != 1:
                raise TransactionFailed(receipt["transactionHash"].to_0x_hex())
        return receipts

    def send(self, tx: dict[str, Any]) -> TxReceipt:
        """One transaction, mined."""
        return self.send_many([tx])[0]

    def deploy(self, bytecode: bytes, abi: list[dict[str, Any]], *args: Any) -> Contract:
        """Deploy and return the bound contract."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = factory.constructor(*args).build_transaction({"from": self.account.address})["data"]
        receipt = self.send({"data": data})
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=abi)  # type: ignore[return-value]


@dataclass(frozen=True)
class DevModel:
    """A model registered on the dev chain: its registry entry and first product."""

    model_id: bytes
    version: int
    verifier: str
    verifier_code_hash: bytes
    onnx_sha256: bytes
    vk_sha256: bytes
    #: Registry instance layout (:func:`prover.deploy.instance_layout`, from the model card).
    layout: tuple[int, ...]
    product_id: int


@dataclass
class DevChain:
    """A deployed settlement with one funded ETH pool and one product per model."""

    w3: Web3
    sender: DevSender
    registry: Contract
    settlement: Contract
    verifier: str
    model_id: bytes
    model_version: int
    pool_id: int
    product_id: int
    verifier_code_hash: bytes
    onnx_sha256: bytes
    vk_sha256: bytes
    #: Registry instance layout (:func:`prover.deploy.instance_layout`, from the model card).
    layout: tuple[int, ...]

    @property
    def chain_id(self) -> int:
        """The chain id."""
        return self.sender.chain_id

    def register_version(self, version: int) -> None:
        """Register another version of the model (same verifier) in the registry."""
        args = [
            self.model_id,
            version,
            self.verifier,
            self.verifier_code_hash,
            self.onnx_sha256,
            self.vk_sha256,
            self.layout,
        ]
        self.sender.send(
            {"to": self.registry.address, "data": self.registry.encode_abi("registerModel", args)}
        )

    def create_product(
        self,
        version: int,
        comparison: int = AT_MOST,
        threshold: int = 0,
        payout: int = 10**16,
        *,
        output: int = 0,
        model_id: bytes | None = None,
    ) -> int:
        """Another product on the pool (for this chain's first model unless ``model_id``): pay
        ``payout`` when output ``output`` compares to ``threshold`` as ``comparison`` says."""
        rule = (comparison, output, threshold)
        args = [self.pool_id, model_id or self.model_id, version, rule, payout]
        receipt = self.sender.send(
            {
                "to": self.settlement.address,
                "data": self.settlement.encode_abi("createProduct", args),
            }
        )
        (event,) = self.settlement.events.ProductCreated().process_receipt(receipt)
        return int(event["args"]["productId"])

    def issue_policies(
        self,
        n: int,
        holder: str | None = None,
        coverage: int = 10**18,
        ttl_s: int = 30 * 86400,
        product_id: int | None = None,
    ) -> list[int]:
        """Issue ``n`` policies on the product (one block); their ids."""
        expiry = int(self.w3.eth.get_block("latest")["timestamp"]) + ttl_s
        holders = [holder or Account.create().address for _ in range(n)]
        txs = [
            {
                "to": self.settlement.address,
                "data": self.settlement.encode_abi(
                    "issuePolicy", [product_id or self.product_id, h, coverage, expiry]
                ),
            }
            for h in holders
        ]
        receipts = self.sender.send_many(txs, gas=400_000)
        ids = []
        for receipt in receipts:
            (event,) = self.settlement.events.PolicyIssued().process_receipt(receipt)
            ids.append(int(event["args"]["policyId"]))
        return ids

    def add_model(
        self,
        bundle: Bundle,
        model_name: str,
        *,
        version: int = 1,
        comparison: int = AT_MOST,
        output: int = 0,
        threshold: int = 0,
        payout: int = 10**16,
    ) -> DevModel:
        """Deploy ``bundle``'s verifier, register it as ``zkcare/<model_name>`` ``version`` and
        create a product for it on the pool (issue policies with ``product_id=``)."""
        entry = _register(self.sender, self.registry, bundle, model_name, version)
        product = self.create_product(
            version, comparison, threshold, payout, output=output, model_id=entry.model_id
        )
        return dataclasses.replace(entry, product_id=product)

    def set_balance(self, address: str, wei: int) -> None:
        """Give ``address`` exactly ``wei`` (anvil_setBalance)."""
        self.w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]

    def trust(self, hospital: str, trusted: bool = True) -> None:
        """Make the pool trust (or distrust) ``hospital``'s attestations."""
        self.sender.send(
            {
                "to": self.settlement.address,
                "data": self.settlement.encode_abi(
                    "setHospitalTrust", [self.pool_id, hospital, trusted]
                ),
            }
        )

    def claim_events(self) -> list[tuple[str, dict[str, Any], str]]:
        """Every ClaimPaid/ClaimDenied so far: ``(name, args, tx hash)``, in chain order."""
        out = []
        for name in ("ClaimPaid", "ClaimDenied"):
            event = getattr(self.settlement.events, name)()
            for entry in event.get_logs(from_block=0):
                key = (entry["blockNumber"], entry["logIndex"])
                out.append((key, name, dict(entry["args"]), entry["transactionHash"].to_0x_hex()))
        out.sort(key=lambda item: item[0])
        return [(name, args, tx) for _, name, args, tx in out]


def _register(
    sender: DevSender, registry: Contract, bundle: Bundle, model_name: str, version: int
) -> DevModel:
    """Deploy ``bundle``'s verifier and register it (``product_id`` is left 0)."""
    verifier_receipt = sender.send({"data": bundle.verifier_artifact["bytecode"]})
    verifier = str(verifier_receipt["contractAddress"])
    code_hash = bytes(keccak(bytes(sender.w3.eth.get_code(verifier))))  # type: ignore[arg-type]
    model_id = bytes(registry_model_id(f"zkcare/{model_name}"))
    layout = tuple(instance_layout(bundle))
    sha = bundle.manifest["sha256"]
    onnx_sha, vk_sha = bytes.fromhex(sha["onnx"]), bytes.fromhex(sha["vk"])
    args = [model_id, version, verifier, code_hash, onnx_sha, vk_sha, layout]
    sender.send({"to": registry.address, "data": registry.encode_abi("registerModel", args)})
    return DevModel(model_id, version, verifier, code_hash, onnx_sha, vk_sha, layout, 0)


def deploy_dev_chain(
    url: str,
    bundle: Bundle,
    hospital: str,
    *,
    deployer_key: str = DEV_PRIVATE_KEY,
    model_name: str = "breast_cancer_lr",
    model_version: int = 1,
    comparison: int = AT_MOST,
    threshold: int = 0,
    payout: int = 10**16,
    pool_funds: int = 10**21,
) -> DevChain:
    """Deploy everything the relay needs; the product pays ``payout`` when the (first) output is
    ``<= threshold`` (``AT_MOST``: for the diagnostic model, malignant by default)."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    deployer = Account.from_key(deployer_key)
    sender = DevSender(w3, deployer)
    reg_abi, reg_code = compiled("ModelRegistry")
    registry = sender.deploy(reg_code, reg_abi, deployer.address)
    registrar = registry.functions.REGISTRAR_ROLE().call()
    sender.send(
        {
            "to": registry.address,
            "data": registry.encode_abi("grantRole", [registrar, deployer.address]),
        }
    )
    model = _register(sender, registry, bundle, model_name, model_version)
    cs_abi, cs_code = compiled("ClaimSettlement")
    settlement = sender.deploy(cs_code, cs_abi, registry.address, deployer.address)
    receipt = sender.send(
        {"to": settlement.address, "data": settlement.encode_abi("createPool", [ETH])}
    )
    (created,) = settlement.events.PoolCreated().process_receipt(receipt)
    pool_id = int(created["args"]["poolId"])
    sender.send(
        {
            "to": settlement.address,
            "value": pool_funds,
            "data": settlement.encode_abi("fundPool", [pool_id, pool_funds]),
        }
    )
    chain = DevChain(
        w3,
        sender,
        registry,
        settlement,
        model.verifier,
        model.model_id,
        model_version,
        pool_id,
        0,
        model.verifier_code_hash,
        model.onnx_sha256,
        model.vk_sha256,
        model.layout,
    )
    chain.product_id = chain.create_product(model_version, comparison, threshold, payout)
    chain.trust(hospital)
    return chain
