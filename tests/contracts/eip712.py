"""Keyword-style adapters over :mod:`prover.attestation` for the contract tests."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from prover.attestation import Attestation
from prover.attestation import sign_attestation as _sign


def attestation(
    *,
    policy_id: int,
    pool_id: int,
    hospital: str,
    input_commitment: int,
    record_nullifier: bytes | str,
    attested_at: int,
    expiry: int,
) -> Attestation:
    """An :class:`Attestation` from keyword arguments (hex or bytes record nullifier)."""
    raw = (
        bytes.fromhex(record_nullifier.removeprefix("0x"))
        if isinstance(record_nullifier, str)
        else bytes(record_nullifier)
    )
    return Attestation(
        policy_id, pool_id, str(hospital), input_commitment, raw, attested_at, expiry
    )


def attestation_digest(*, chain_id: int, verifying_contract: str, **fields: Any) -> bytes:
    """The 32-byte digest the hospital signs (equals ClaimSettlement.attestationDigest)."""
    return attestation(**fields).digest(chain_id, str(verifying_contract))


def sign_attestation(
    private_key: bytes | str,
    *,
    chain_id: int,
    verifying_contract: str,
    name: str | None = None,
    version: str | None = None,
    message: dict[str, Any] | None = None,
    **fields: Any,
) -> bytes:
    """Sign an attestation with an EOA key.

    ``name``/``version`` forge a wrong domain; ``message`` overrides message fields after the
    dataclass' checks (to forge what :class:`Attestation` refuses, e.g. too long an expiry).
    """
    att = attestation(**fields)
    account = Account.from_key(private_key)
    if name is None and version is None and message is None:
        return _sign(account, att, chain_id, str(verifying_contract))
    data = att.typed_data(chain_id, str(verifying_contract))
    data["domain"].update({k: v for k, v in (("name", name), ("version", version)) if v})
    data["message"].update(message or {})
    return bytes(account.sign_message(encode_typed_data(full_message=data)).signature)
