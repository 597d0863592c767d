"""Keyword-style adapters over :mod:`prover.attestation` for the contract tests."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data

from prover.attestation import Attestation
from prover.attestation import sign_attestation as _sign


def _attestation(
    policy_id: int, input_commitment: int, record_nullifier: bytes | str, expiry: int
) -> Attestation:
    raw = (
        bytes.fromhex(record_nullifier.removeprefix("0x"))
        if isinstance(record_nullifier, str)
        else bytes(record_nullifier)
    )
    return Attestation(policy_id, input_commitment, raw, expiry)


def attestation_digest(
    *,
    chain_id: int,
    verifying_contract: str,
    policy_id: int,
    input_commitment: int,
    record_nullifier: bytes | str,
    expiry: int,
) -> bytes:
    """The 32-byte digest the hospital signs (equals ClaimSettlement.attestationDigest)."""
    att = _attestation(policy_id, input_commitment, record_nullifier, expiry)
    return att.digest(chain_id, str(verifying_contract))


def sign_attestation(
    private_key: bytes | str,
    *,
    chain_id: int,
    verifying_contract: str,
    policy_id: int,
    input_commitment: int,
    record_nullifier: bytes | str,
    expiry: int,
    name: str | None = None,
    version: str | None = None,
) -> bytes:
    """Sign an attestation with an EOA key (``name``/``version`` forge a wrong domain)."""
    att = _attestation(policy_id, input_commitment, record_nullifier, expiry)
    account = Account.from_key(private_key)
    if name is None and version is None:
        return _sign(account, att, chain_id, str(verifying_contract))
    data = att.typed_data(chain_id, str(verifying_contract))
    data["domain"].update({k: v for k, v in (("name", name), ("version", version)) if v})
    return bytes(account.sign_message(encode_typed_data(full_message=data)).signature)
