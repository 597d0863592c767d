"""ClaimSettlement.submitClaims: per-claim results; a bad claim is skipped with ClaimRejected."""

from __future__ import annotations

from eth_abi import decode
from eth_utils import keccak

from .helpers import ONE, events

E18 = 10**18


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_batch_settles_each_claim_independently(
    project, settlement, eth_setup, make_policy, make_claim, relayer, patient, deployer, chain
):
    _, product_id, policy_id = eth_setup
    reverting = deployer.deploy(project.RevertingReceiver)
    other_policy = make_policy(product_id, holder=reverting)
    paid = make_claim(policy_id, output=ONE)
    denied = make_claim(policy_id, output=-ONE)
    forged = make_claim(policy_id)
    forged.signature = b"\x02" * 65
    duplicate = make_claim(
        policy_id, commitment=paid.input_commitment, record=paid.record_nullifier
    )
    credited = make_claim(other_policy)
    batch = [c.as_tuple() for c in (paid, denied, forged, duplicate, credited)]

    assert list(settlement.submitClaims.call(batch, sender=relayer)) == [1, 2, 0, 0, 3]
    before = patient.balance
    receipt = settlement.submitClaims(batch, sender=relayer)

    assert [e.claimId for e in events(receipt, settlement, "ClaimPaid")] == [1, 3]
    assert [e.claimId for e in events(receipt, settlement, "ClaimDenied")] == [2]
    rejected = events(receipt, settlement, "ClaimRejected")
    assert [(e.index, e.policyId) for e in rejected] == [(2, policy_id), (3, policy_id)]
    reason = bytes(rejected[0].reason)
    assert reason[:4] == selector("ClaimSettlementInvalidAttestation(address)")
    reason = bytes(rejected[1].reason)
    assert reason[:4] == selector("ClaimSettlementRecordAlreadyClaimed(uint256,bytes32,uint256)")
    assert decode(["uint256", "bytes32", "uint256"], reason[4:]) == (
        policy_id,
        paid.record_nullifier,
        1,
    )
    assert events(receipt, settlement, "PayoutCredited")[0].account == reverting.address
    assert patient.balance - before == E18
    assert settlement.claimCount() == 3
    # The rejected forged claim left no trace: re-signed properly, it settles.
    fixed = make_claim(
        policy_id, commitment=forged.input_commitment, record=forged.record_nullifier
    )
    assert events(settlement.submitClaim(fixed.as_tuple(), sender=relayer), settlement, "ClaimPaid")


def test_batch_proof_failure_is_reported(settlement, eth_setup, make_claim, relayer):
    _, _, policy_id = eth_setup
    bad = make_claim(policy_id)
    bad.proof = b"\x00" * 64
    receipt = settlement.submitClaims([bad.as_tuple()], sender=relayer)
    [rejected] = events(receipt, settlement, "ClaimRejected")
    assert bytes(rejected.reason)[:4] == selector("ModelRegistryProofRejected(bytes32,uint32)")
    assert settlement.claimCount() == 0


def test_empty_batch(settlement, relayer):
    assert list(settlement.submitClaims.call([], sender=relayer)) == []


def test_batch_gas_per_claim(settlement, make_pool, make_product, make_policy, make_claim, relayer):
    """Report settlement gas (mock verifier, so this is the overhead around a ~450k real verify)."""
    pool_id = make_pool(fund=100 * E18)
    product_id = make_product(pool_id)
    policies = [make_policy(product_id) for _ in range(5)]
    single = settlement.submitClaim(make_claim(policies[0]).as_tuple(), sender=relayer)
    batch = settlement.submitClaims(
        [make_claim(p).as_tuple() for p in policies[1:]], sender=relayer
    )
    assert len(events(batch, settlement, "ClaimPaid")) == 4
    per_claim = (batch.gas_used - 21_000) / 4
    print(
        f"\nsubmitClaim (ETH, paid): {single.gas_used} gas; submitClaims x4: {per_claim:.0f} gas per claim"
    )
    assert single.gas_used < 160_000
    assert per_claim < 150_000
