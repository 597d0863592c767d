"""EIP-712 attestations and record nullifiers (prover/attestation.py), the embedded ABI, and the
chain helpers' pure parts (revert decoding, broadcast classification, URL redaction)."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector

from prover.attestation import Attestation, record_nullifier, recover_attester, sign_attestation
from prover.exceptions import InvalidInput
from prover.relay import abi
from prover.relay.chain import Broadcast, RevertDecoder, classify_broadcast_error, redact_url
from prover.relay.devchain import compiled


def test_digest_matches_the_contract_and_signature_recovers(dev_chain, hospital):
    att = Attestation(
        policy_id=42,
        input_commitment=12345678901234567890,
        record_nullifier=b"\x07" * 32,
        expiry=1_900_000_000,
    )
    settlement = dev_chain.settlement
    on_chain = settlement.functions.attestationDigest(
        att.policy_id, att.input_commitment, att.record_nullifier, att.expiry
    ).call()
    assert att.digest(dev_chain.chain_id, settlement.address) == on_chain
    signature = sign_attestation(hospital, att, dev_chain.chain_id, settlement.address)
    assert len(signature) == 65
    assert recover_attester(att, signature, dev_chain.chain_id, settlement.address) == (
        hospital.address
    )
    # another chain or contract is another message
    assert recover_attester(att, signature, 1, settlement.address) != hospital.address
    other = "0x" + "12" * 20
    assert recover_attester(att, signature, dev_chain.chain_id, other) != hospital.address


def test_attestation_checks_its_fields():
    with pytest.raises(InvalidInput, match="recordNullifier must be 32 bytes, got 31"):
        Attestation(1, 2, b"\x00" * 31, 3)
    with pytest.raises(InvalidInput, match="does not fit in uint64"):
        Attestation(1, 2, b"\x00" * 32, 2**64)


def test_record_nullifier_is_keyed_and_stable():
    secret, other = b"s" * 32, b"t" * 32
    a = record_nullifier(secret, "MRN-0001")
    assert len(a) == 32 and a == record_nullifier(secret, "MRN-0001")
    assert a != record_nullifier(secret, "MRN-0002") and a != record_nullifier(other, "MRN-0001")
    assert b"MRN" not in a
    with pytest.raises(InvalidInput, match="nullifier secret has 8 bytes; at least 32"):
        record_nullifier(b"s" * 8, "MRN-0001")
    with pytest.raises(InvalidInput, match="record id is empty"):
        record_nullifier(secret, "")


def test_embedded_abi_matches_the_compiled_contract():
    compiled_abi, _ = compiled("ClaimSettlement")
    assert abi.extract(compiled_abi) == abi.CLAIM_SETTLEMENT_ABI, (
        "ClaimSettlement changed: regenerate prover/relay/abi.py (python -m prover.relay.abi)"
    )


def test_revert_decoder():
    decoder = RevertDecoder(abi.CLAIM_SETTLEMENT_ABI)
    selector = function_signature_to_4byte_selector("ClaimSettlementUnknownPolicy(uint256)")
    assert decoder.decode(selector + abi_encode(["uint256"], [999])) == (
        "ClaimSettlementUnknownPolicy(policyId=999)"
    )
    error = function_signature_to_4byte_selector("Error(string)")
    assert decoder.decode(error + abi_encode(["string"], ["nope"])) == "Error(message=nope)"
    assert decoder.decode(b"\xde\xad\xbe\xef") == "unknown error 0xdeadbeef (4 bytes)"
    assert decoder.decode(b"") == "execution reverted without data"


@pytest.mark.parametrize(
    "message,outcome",
    [
        ("{'code': -32003, 'message': 'transaction already imported'}", Broadcast.KNOWN),
        ("already known", Broadcast.KNOWN),
        ("nonce too low: next nonce 5, tx nonce 4", Broadcast.NONCE_USED),
        ("Insufficient funds for gas * price + value", Broadcast.NO_FUNDS),
        ("replacement transaction underpriced", Broadcast.UNDERPRICED),
        ("max fee per gas less than block base fee", Broadcast.UNDERPRICED),
        ("something else", Broadcast.REJECTED),
    ],
)
def test_broadcast_errors_are_classified(message, outcome):
    assert classify_broadcast_error(message) == outcome


def test_rpc_urls_are_redacted():
    assert redact_url("https://user:pw@mainnet.example.io/v3/SECRETKEY?x=1") == (
        "https://mainnet.example.io"
    )
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
