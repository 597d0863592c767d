"""A small web3.py client: deploy contracts, verify proofs by eth_call and by transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxReceipt

from prover.exceptions import ChainUnavailable, ProofRejected, TransactionFailed
from prover.zk.proof import Proof, evm_calldata


@dataclass(frozen=True)
class Deployment:
    """A deployed contract."""

    address: str
    tx_hash: str
    gas_used: int
    code_size: int


class ChainClient:
    """Signs with a local key (never logged) and talks to one JSON-RPC endpoint."""

    def __init__(self, url: str, private_key: str, timeout: float = 30.0) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:  # requests/connection errors come in many shapes
            raise ChainUnavailable(url, type(exc).__name__) from exc
        self._account: LocalAccount = Account.from_key(private_key)
        self.timeout = timeout

    @property
    def address(self) -> ChecksumAddress:
        """The signer's address."""
        return self._account.address

    def _send(self, tx: dict[str, Any]) -> TxReceipt:
        tx.setdefault("from", self.address)
        tx.setdefault("chainId", self.chain_id)
        tx.setdefault("nonce", self.w3.eth.get_transaction_count(self.address, "pending"))
        if "gas" not in tx:
            tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 1.2) + 10_000  # type: ignore[arg-type]
        base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tx.setdefault("maxPriorityFeePerGas", self.w3.to_wei(1, "gwei"))
        tx.setdefault("maxFeePerGas", 2 * int(base) + int(tx["maxPriorityFeePerGas"]))
        signed = self._account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if receipt["status"] != 1:
            raise TransactionFailed(tx_hash.to_0x_hex())
        return receipt

    def deploy(self, bytecode: bytes) -> Deployment:
        """Deploy raw creation bytecode."""
        receipt = self._send({"data": "0x" + bytecode.hex()})
        address = str(receipt["contractAddress"])
        code = self.w3.eth.get_code(address)  # type: ignore[arg-type]
        return Deployment(
            address, receipt["transactionHash"].to_0x_hex(), receipt["gasUsed"], len(code)
        )

    def call_verify(self, verifier: str, proof: Proof) -> bool:
        """``verifyProof`` by ``eth_call``: True, or :class:`ProofRejected`."""
        try:
            raw = self.w3.eth.call({"to": verifier, "data": evm_calldata(proof)})
        except (ContractLogicError, Web3RPCError) as exc:
            raise ProofRejected(f"verifier {verifier} (eth_call)", "execution reverted") from exc
        if int.from_bytes(raw, "big") != 1:
            raise ProofRejected(f"verifier {verifier} (eth_call)", f"returned {raw.hex()}")
        return True

    def send_verify(self, verifier: str, proof: Proof, gas: int = 2_000_000) -> TxReceipt:
        """``verifyProof`` in a transaction (fixed gas so a revert is mined, not estimated)."""
        try:
            return self._send({"to": verifier, "data": evm_calldata(proof), "gas": gas})
        except TransactionFailed as exc:
            raise ProofRejected(f"verifier {verifier} (transaction {exc.tx_hash})") from exc
