"""Build and sign zkcare's EIP-712 hospital attestations (ClaimSettlement input provenance).

A hospital attests that ``inputCommitment`` (the Poseidon commitment the proof exposes as its
hashed-input instance) is the commitment to patient record ``recordNullifier`` for policy
``policyId``, valid until ``expiry`` (unix seconds, inclusive). The domain binds the signature to
one chain id and one ClaimSettlement deployment.

Only ``eth_account`` is needed, so this module can be copied into ``prover/`` as is.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

DOMAIN_NAME = "zkcare ClaimSettlement"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
ATTESTATION_TYPE = [
    {"name": "policyId", "type": "uint256"},
    {"name": "inputCommitment", "type": "uint256"},
    {"name": "recordNullifier", "type": "bytes32"},
    {"name": "expiry", "type": "uint64"},
]


def _as_bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"recordNullifier must be 32 bytes, got {len(raw)}")
    return raw


def attestation_typed_data(
    *,
    chain_id: int,
    verifying_contract: str,
    policy_id: int,
    input_commitment: int,
    record_nullifier: bytes | str,
    expiry: int,
    name: str = DOMAIN_NAME,
    version: str = DOMAIN_VERSION,
) -> dict[str, Any]:
    """The full EIP-712 typed-data message of an attestation."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Attestation": ATTESTATION_TYPE},
        "primaryType": "Attestation",
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": str(verifying_contract),
        },
        "message": {
            "policyId": policy_id,
            "inputCommitment": input_commitment,
            "recordNullifier": _as_bytes32(record_nullifier),
            "expiry": expiry,
        },
    }


def attestation_digest(**kwargs: Any) -> bytes:
    """The 32-byte digest the hospital signs (equals ClaimSettlement.attestationDigest)."""
    return bytes(
        _hash_eip191_message(encode_typed_data(full_message=attestation_typed_data(**kwargs)))
    )


def sign_attestation(private_key: bytes | str, **kwargs: Any) -> bytes:
    """Sign an attestation with an EOA key: 65-byte r || s || v signature."""
    signable = encode_typed_data(full_message=attestation_typed_data(**kwargs))
    return bytes(Account.sign_message(signable, private_key).signature)
