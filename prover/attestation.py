"""A hospital's EIP-712 attestation for ClaimSettlement, and record nullifiers.

The hospital ``hospital`` attests that ``inputCommitment`` (the Poseidon commitment the proof
exposes as its hashed-input instance) commits to the patient record identified by
``recordNullifier``, for ``policyId`` of pool ``poolId``, made at ``attestedAt`` and valid until
``expiry`` (unix seconds, inclusive; at most ``MAX_ATTESTATION_TTL`` after ``attestedAt``). The
EIP-712 domain (``"zkcare ClaimSettlement"``, version ``"1"``, chain id, settlement address) binds
the signature to one deployment, exactly as ``ClaimSettlement.attestationDigest`` computes it.
Naming the hospital and the pool keeps two ERC-1271 wallets sharing an owner key from accepting
each other's attestations.

The record nullifier is a keyed hash (HMAC-SHA256 with a hospital secret) of the hospital's own
record id, so the same record cannot be claimed twice on a policy and the value on-chain reveals
nothing about the record.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from prover.exceptions import InvalidInput

DOMAIN_NAME = "zkcare ClaimSettlement"
DOMAIN_VERSION = "1"
NULLIFIER_TAG = b"zkcare/record-nullifier/v1\x00"
MIN_SECRET_BYTES = 32
#: ``ClaimSettlement.MAX_ATTESTATION_TTL``: the longest an attestation may be valid (seconds).
MAX_ATTESTATION_TTL = 3 * 86_400

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
ATTESTATION_TYPE = [
    {"name": "policyId", "type": "uint256"},
    {"name": "poolId", "type": "uint256"},
    {"name": "hospital", "type": "address"},
    {"name": "inputCommitment", "type": "uint256"},
    {"name": "recordNullifier", "type": "bytes32"},
    {"name": "attestedAt", "type": "uint64"},
    {"name": "expiry", "type": "uint64"},
]


@dataclass(frozen=True)
class Attestation:
    """What a hospital signs for one claim (``ClaimSettlement.Attestation``)."""

    policy_id: int
    pool_id: int
    hospital: str
    input_commitment: int
    record_nullifier: bytes
    attested_at: int
    expiry: int

    def __post_init__(self) -> None:
        if len(self.record_nullifier) != 32:
            raise InvalidInput(
                f"recordNullifier must be 32 bytes, got {len(self.record_nullifier)}"
            )
        if not is_address(self.hospital):
            raise InvalidInput(f"hospital {self.hospital!r} is not an address")
        for name, value in (("attestedAt", self.attested_at), ("expiry", self.expiry)):
            if not 0 <= value < 1 << 64:
                raise InvalidInput(f"{name} {value} does not fit in uint64")
        if self.expiry > self.attested_at + MAX_ATTESTATION_TTL:
            raise InvalidInput(
                f"expiry {self.expiry} is more than {MAX_ATTESTATION_TTL} s after attestedAt "
                f"{self.attested_at}"
            )

    def as_tuple(self) -> tuple[int, int, str, int, bytes, int, int]:
        """The ``ClaimSettlement.Attestation`` ABI tuple (for ``attestationDigest``)."""
        return (
            self.policy_id,
            self.pool_id,
            to_checksum_address(self.hospital),
            self.input_commitment,
            self.record_nullifier,
            self.attested_at,
            self.expiry,
        )

    def typed_data(self, chain_id: int, verifying_contract: str) -> dict[str, Any]:
        """The full EIP-712 typed-data message."""
        return {
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Attestation": ATTESTATION_TYPE},
            "primaryType": "Attestation",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": chain_id,
                "verifyingContract": to_checksum_address(verifying_contract),
            },
            "message": {
                "policyId": self.policy_id,
                "poolId": self.pool_id,
                "hospital": to_checksum_address(self.hospital),
                "inputCommitment": self.input_commitment,
                "recordNullifier": self.record_nullifier,
                "attestedAt": self.attested_at,
                "expiry": self.expiry,
            },
        }

    def signable(self, chain_id: int, verifying_contract: str) -> SignableMessage:
        """The EIP-191 (version 0x01) message wallets sign."""
        return encode_typed_data(full_message=self.typed_data(chain_id, verifying_contract))

    def digest(self, chain_id: int, verifying_contract: str) -> bytes:
        """The 32-byte digest; equals ``ClaimSettlement.attestationDigest``."""
        return bytes(_hash_eip191_message(self.signable(chain_id, verifying_contract)))


def sign_attestation(
    account: LocalAccount, attestation: Attestation, chain_id: int, verifying_contract: str
) -> bytes:
    """Sign with the hospital's key: a 65-byte ``r || s || v`` signature."""
    signed = account.sign_message(attestation.signable(chain_id, verifying_contract))
    return bytes(signed.signature)


def recover_attester(
    attestation: Attestation, signature: bytes, chain_id: int, verifying_contract: str
) -> str:
    """The address that signed ``attestation`` (checksummed)."""
    signable = attestation.signable(chain_id, verifying_contract)
    return str(Account.recover_message(signable, signature=signature))


def record_nullifier(secret: bytes, record_id: str) -> bytes:
    """HMAC-SHA256 of the hospital's record id under its secret (32 bytes, hides the id)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidInput(
            f"nullifier secret has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are required"
        )
    if not record_id:
        raise InvalidInput("record id is empty")
    return hmac.new(secret, NULLIFIER_TAG + record_id.encode(), hashlib.sha256).digest()
