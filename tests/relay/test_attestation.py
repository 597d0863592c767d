"""EIP-712 attestations and record nullifiers (prover/attestation.py), the embedded ABI, and the
chain helpers' pure parts (revert decoding, broadcast classification, URL redaction)."""

from __future__ import annotations

import dataclasses

import pytest
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector

from prover.attestation import (
    MAX_ATTESTATION_TTL,
    Attestation,
    record_nullifier,
    recover_attester,
    sign_attestation,
)
from prover.exceptions import InvalidInput
from prover.relay import abi
from prover.relay.chain import (
    Broadcast,
    RevertDecoder,
    RpcPool,
    SettlementClient,
    classify_broadcast_error,
    redact_url,
)
from prover.relay.devchain import compiled
from prover.relay.states import JobState

from .support import job_body, make_records, wait_until


def test_digest_matches_the_contract_and_signature_recovers(dev_chain, hospital):
    att = Attestation(
        policy_id=42,
        pool_id=7,
        hospital=hospital.address,
        input_commitment=12345678901234567890,
        record_nullifier=b"\x07" * 32,
        attested_at=1_899_990_000,
        expiry=1_900_000_000,
    )
    settlement = dev_chain.settlement
    on_chain = settlement.functions.attestationDigest(att.as_tuple()).call()
    assert att.digest(dev_chain.chain_id, settlement.address) == on_chain
    assert settlement.functions.MAX_ATTESTATION_TTL().call() == MAX_ATTESTATION_TTL
    # every signed field is part of the digest (hospital and pool included)
    for change in (
        {"pool_id": 8},
        {"hospital": "0x" + "12" * 20},
        {"attested_at": att.attested_at + 1},
        {"policy_id": 43},
    ):
        other = dataclasses.replace(att, **change)  # type: ignore[arg-type]
        assert other.digest(dev_chain.chain_id, settlement.address) != on_chain
        assert settlement.functions.attestationDigest(other.as_tuple()).call() == other.digest(
            dev_chain.chain_id, settlement.address
        )
    signature = sign_attestation(hospital, att, dev_chain.chain_id, settlement.address)
    assert len(signature) == 65
    assert recover_attester(att, signature, dev_chain.chain_id, settlement.address) == (
        hospital.address
    )
    # another chain or contract is another message
    assert recover_attester(att, signature, 1, settlement.address) != hospital.address
    other = "0x" + "12" * 20
    assert recover_attester(att, signature, dev_chain.chain_id, other) != hospital.address


def test_pool_of_reads_policy_then_product_and_caches(node, dev_chain):
    """The submitter signs the policy's pool: policy -> product -> pool, read once per policy."""
    client = SettlementClient(RpcPool([node.url]), dev_chain.settlement.address)
    (policy_id,) = dev_chain.issue_policies(1)
    assert client.pool_of(policy_id) == dev_chain.pool_id != 0
    assert client.pool_of(10**9) == 0  # no such policy: not cached, may exist later
    client.rpc = RpcPool(["http://127.0.0.1:1"])  # unreachable: the answer is cached
    assert client.pool_of(policy_id) == dev_chain.pool_id


def test_attestation_checks_its_fields():
    hospital = "0x" + "ab" * 20
    with pytest.raises(InvalidInput, match="recordNullifier must be 32 bytes, got 31"):
        Attestation(1, 1, hospital, 2, b"\x00" * 31, 3, 3)
    with pytest.raises(InvalidInput, match="expiry 18446744073709551616 does not fit in uint64"):
        Attestation(1, 1, hospital, 2, b"\x00" * 32, 2**64 - 1, 2**64)
    with pytest.raises(InvalidInput, match="attestedAt -1 does not fit in uint64"):
        Attestation(1, 1, hospital, 2, b"\x00" * 32, -1, 3)
    with pytest.raises(InvalidInput, match="hospital 'nope' is not an address"):
        Attestation(1, 1, "nope", 2, b"\x00" * 32, 3, 3)
    with pytest.raises(InvalidInput, match=f"expiry {MAX_ATTESTATION_TTL + 1} is more than"):
        Attestation(1, 1, hospital, 2, b"\x00" * 32, 0, MAX_ATTESTATION_TTL + 1)


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


@pytest.mark.slow
def test_claim_signed_while_live_and_mined_after_expiry_is_paid(
    make_relay, client_for, dev_chain, ledger
):
    """The relay attests at intake time: a claim broadcast while its policy is live but mined
    after the policy expired lands in the contract's grace (it was PolicyExpired before)."""
    w3 = dev_chain.w3

    def rpc(method: str, *params: object) -> object:
        response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response.get("result")

    relay = make_relay(confirmations=1)
    client = client_for(relay)
    [record] = make_records(1, seed=77)
    ledger.add_records([record])
    [policy_id] = dev_chain.issue_policies(1, ttl_s=600)
    expiry = dev_chain.settlement.functions.getPolicy(policy_id).call()[1]
    rpc("evm_setIntervalMining", 0)  # nothing is mined: the claim waits in the mempool
    try:
        response = client.post("/v1/jobs", json=job_body(record, policy_id, "grace-0001"))
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        wait_until(
            lambda: relay.store.get(job_id).state == JobState.SUBMITTED, 120, "the broadcast"
        )
        head = int(w3.eth.get_block("latest")["timestamp"])
        rpc("evm_increaseTime", expiry - head + 60)  # the next block is past the expiry
    finally:
        rpc("evm_setIntervalMining", 1)
    assert relay.wait_idle(90), relay.store.counts()
    job = relay.store.get(job_id)
    assert job.state == (JobState.PAID if record.pays else JobState.DENIED), job.reason
    assert job.block_number is not None
    assert int(w3.eth.get_block(job.block_number)["timestamp"]) > expiry
