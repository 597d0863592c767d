"""The audit's attacks on ClaimSettlement, each reproduced against the contract (mock verifier).

Every test here failed on the audited code (global commitment nullifier, no grace, immediate
distrust, unbounded ERC-1271 calls, attestations without hospital or pool) and passes now. The
real-EZKL-proof replay is ``test_real_proofs.py::test_real_proof_replayed_elsewhere_...``.
"""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_utils import keccak

from .conftest import fresh_commitment, pool_of
from .eip712 import sign_attestation
from .helpers import (
    BURN_GAS,
    DIAG_MODEL,
    ETH,
    EVAL_MODEL,
    ONE,
    RETURN_NON_BOOL,
    RETURN_SHORT,
    encode_signed,
    events,
    reverts,
)
from .test_batch import selector
from .test_bounty import Block

E18 = 10**18
DAY = 86400


@pytest.fixture(scope="session")
def attack_hospital_key():
    """The attacker's own 'hospital' key, trusted only by the attacker's pool."""
    return Account.from_key(keccak(text="zkcare attacker hospital"))


@pytest.fixture(scope="session")
def attack_policy(settlement, copier, attack_hospital_key, make_product, chain):
    """The attacker's 1-wei pool trusting its own key, a product on the victim's model, a policy."""

    def make() -> int:
        receipt = settlement.createPool(ETH, sender=copier)
        pool_id = receipt.decode_logs(settlement.PoolCreated)[0].poolId
        settlement.fundPool(pool_id, 1, value=1, sender=copier)
        settlement.setHospitalTrust(pool_id, attack_hospital_key.address, True, sender=copier)
        product = settlement.createProduct(pool_id, DIAG_MODEL, 1, (0, 0, 0), 1, sender=copier)
        product_id = product.decode_logs(settlement.ProductCreated)[0].productId
        issued = settlement.issuePolicy(
            product_id, copier, 1, chain.pending_timestamp + 30 * DAY, sender=copier
        )
        return issued.decode_logs(settlement.PolicyIssued)[0].policyId

    return make


# ------------------------------------------------------------------------------------------ finding 1


def test_front_run_on_the_attackers_own_policy_does_not_burn_the_claim(
    settlement,
    eth_setup,
    make_claim,
    attack_policy,
    attack_hospital_key,
    copier,
    relayer,
    patient,
    chain,
):
    """The attacker sees the victim's claim in the mempool and front-runs it, in the same block,
    with the victim's proof on its own policy (1-wei pool, self-trusted key). Both settle; the
    victim is paid."""
    _, _, policy_id = eth_setup
    victim = make_claim(policy_id)
    mine = attack_policy()
    stolen = make_claim(mine, commitment=victim.input_commitment, signer=attack_hospital_key)
    assert stolen.proof == victim.proof and stolen.instances == victim.instances
    before = patient.balance
    with Block(chain) as block:
        first = block.send(
            copier, settlement, settlement.submitClaim.encode_input(stolen.as_tuple()), tip_gwei=50
        )
        second = block.send(
            relayer, settlement, settlement.submitClaim.encode_input(victim.as_tuple())
        )
    assert [block.receipts[i]["status"] for i in (first, second)] == [1, 1]
    assert settlement.claimOfCommitment(mine, victim.input_commitment) == 1
    assert settlement.claimOfCommitment(policy_id, victim.input_commitment) == 2
    assert patient.balance - before == E18


def test_victims_public_calldata_cannot_be_turned_against_it(
    settlement,
    eth_setup,
    make_claim,
    attack_policy,
    attack_hospital_key,
    copier,
    relayer,
    hospital,
    patient,
):
    """Whatever the attacker takes from the victim's broadcast claim (pending or failed), on every
    retry: its replays on its own policies settle only those, and the victim's signature re-pointed
    at the attacker's policy (whose pool trusts the victim's hospital too) is refused."""
    _, _, policy_id = eth_setup
    victim = make_claim(policy_id)
    for _ in range(2):
        mine = attack_policy()
        settlement.setHospitalTrust(
            pool_of(settlement, mine), hospital.address, True, sender=copier
        )
        hijacked = dataclasses.replace(victim, policy_id=mine)
        with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
            settlement.submitClaim(hijacked.as_tuple(), sender=copier)
        own = make_claim(mine, commitment=victim.input_commitment, signer=attack_hospital_key)
        assert events(
            settlement.submitClaim(own.as_tuple(), sender=copier), settlement, "ClaimPaid"
        )
    assert settlement.claimOfCommitment(policy_id, victim.input_commitment) == 0
    before = patient.balance
    receipt = settlement.submitClaim(victim.as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].policyId == policy_id
    assert patient.balance - before == E18


def test_replay_on_another_product_or_policy_of_the_same_pool_does_not_block(
    settlement, eth_setup, make_product, make_policy, make_claim, relayer, patient, copier
):
    """Even the victim's own pool: the proof attested (by the trusted hospital) for another
    product's policy held by the attacker leaves the victim's nullifier untouched."""
    pool_id, _, policy_id = eth_setup
    other = make_policy(make_product(pool_id, threshold=0), holder=copier, coverage=E18)
    victim = make_claim(policy_id)
    copy = make_claim(other, commitment=victim.input_commitment, record=victim.record_nullifier)
    settlement.submitClaim(copy.as_tuple(), sender=copier)
    before = patient.balance
    settlement.submitClaim(victim.as_tuple(), sender=relayer)
    assert patient.balance - before == E18


def test_replay_on_another_contract_or_chain_does_not_block(
    project,
    settlement,
    registry,
    eth_setup,
    make_claim,
    deployer,
    copier,
    relayer,
    hospital,
    insurer,
    patient,
):
    _, _, policy_id = eth_setup
    twin = deployer.deploy(project.ClaimSettlement, registry, deployer)
    pool = twin.createPool(ETH, sender=insurer).decode_logs(twin.PoolCreated)[0].poolId
    twin.fundPool(pool, E18, value=E18, sender=insurer)
    twin.setHospitalTrust(pool, hospital.address, True, sender=insurer)
    product = twin.createProduct(pool, DIAG_MODEL, 1, (0, 0, 0), 1, sender=insurer)
    product_id = product.decode_logs(twin.ProductCreated)[0].productId
    twin_policy = 0
    while twin_policy < policy_id:  # the same policy id on both contracts
        expiry = settlement.getPolicy(policy_id).expiry
        issued = twin.issuePolicy(product_id, copier, 1, expiry, sender=insurer)
        twin_policy = issued.decode_logs(twin.PolicyIssued)[0].policyId
    assert twin_policy == policy_id
    victim = make_claim(policy_id)
    with reverts(twin.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        twin.submitClaim(victim.as_tuple(), sender=copier)
    on_twin = make_claim(policy_id, commitment=victim.input_commitment, contract=twin)
    assert events(twin.submitClaim(on_twin.as_tuple(), sender=copier), twin, "ClaimPaid")
    other_chain = make_claim(policy_id, commitment=victim.input_commitment, sign_chain_id=1)
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        settlement.submitClaim(other_chain.as_tuple(), sender=copier)
    before = patient.balance
    settlement.submitClaim(victim.as_tuple(), sender=relayer)
    assert patient.balance - before == E18


# ------------------------------------------------------------------------------------------ finding 2


def test_claim_attested_before_expiry_lands_in_the_grace(
    settlement, make_pool, make_product, make_policy, make_claim, relayer, stranger, patient, chain
):
    """Attested on the policy's last second, held up (congestion) until after expiry: paid, and
    nobody can release the reservation under it meanwhile."""
    policy_id = make_policy(make_product(make_pool()), expiry=chain.pending_timestamp + 100)
    expiry = settlement.getPolicy(policy_id).expiry
    claim = make_claim(policy_id, attested_at=expiry, expiry=expiry + DAY)
    chain.mine(deltatime=3600)
    with reverts(settlement.ClaimSettlementPolicyNotExpired, policyId=policy_id, expiry=expiry):
        settlement.releasePolicy(policy_id, sender=stranger)
    before = patient.balance
    settlement.submitClaim(claim.as_tuple(), sender=relayer)
    assert patient.balance - before == E18


def test_pause_then_expiry_keeps_the_claim(
    settlement,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    relayer,
    deployer,
    insurer,
    stranger,
    patient,
    chain,
):
    """Paused across the expiry: no release, no withdrawal of the reserve; unpaused within the
    grace, the claim lands."""
    pool_id = make_pool(fund=2 * E18)
    policy_id = make_policy(make_product(pool_id), expiry=chain.pending_timestamp + 100)
    claim = make_claim(policy_id, expiry=chain.pending_timestamp + 2 * DAY)
    settlement.pause(sender=deployer)
    chain.mine(deltatime=DAY)
    with reverts(settlement.EnforcedPause):
        settlement.releasePolicy(policy_id, sender=stranger)
    with reverts(settlement.EnforcedPause):
        settlement.withdrawFromPool(pool_id, 1, insurer, sender=insurer)
    settlement.unpause(sender=deployer)
    before = patient.balance
    settlement.submitClaim(claim.as_tuple(), sender=relayer)
    assert patient.balance - before == E18


def test_distrust_does_not_void_attestations_made_while_trusted(
    settlement, eth_setup, make_claim, insurer, relayer, hospital, patient, chain
):
    """The insurer distrusts the hospital after it attested, before the claim lands: still paid.
    Attestations made from the distrust on are refused."""
    pool_id, _, policy_id = eth_setup
    signed_before = make_claim(policy_id)
    chain.mine(deltatime=60)
    settlement.setHospitalTrust(pool_id, hospital.address, False, sender=insurer)
    distrusted_at = settlement.getHospitalTrust(pool_id, hospital.address).distrustedAt
    # Distrusting again does not move the cut-off later.
    chain.mine(deltatime=60)
    settlement.setHospitalTrust(pool_id, hospital.address, False, sender=insurer)
    assert settlement.getHospitalTrust(pool_id, hospital.address).distrustedAt == distrusted_at
    after = make_claim(policy_id)
    with reverts(
        settlement.ClaimSettlementUntrustedHospital, poolId=pool_id, hospital=hospital.address
    ):
        settlement.submitClaim(after.as_tuple(), sender=relayer)
    before = patient.balance
    settlement.submitClaim(signed_before.as_tuple(), sender=relayer)
    assert patient.balance - before == E18


def test_compromised_key_cannot_outlive_the_distrust(
    settlement, eth_setup, make_claim, insurer, relayer, hospital, chain, chain_id
):
    """A stolen hospital key backdates attestedAt to before the distrust. It must still expire
    within MAX_ATTESTATION_TTL of that time, so after distrustedAt + TTL nothing it signs lands."""
    pool_id, _, policy_id = eth_setup
    ttl = settlement.MAX_ATTESTATION_TTL()
    settlement.setHospitalTrust(pool_id, hospital.address, False, sender=insurer)
    cut = settlement.getHospitalTrust(pool_id, hospital.address).distrustedAt
    backdated = make_claim(policy_id, attested_at=cut - 1, expiry=cut - 1 + ttl)
    forever = make_claim(policy_id, attested_at=cut - 1)
    forever.attestation_expiry = cut + 365 * DAY
    forever.signature = sign_attestation(
        hospital.key,
        chain_id=chain_id,
        verifying_contract=settlement.address,
        policy_id=policy_id,
        pool_id=pool_id,
        hospital=hospital.address,
        input_commitment=forever.input_commitment,
        record_nullifier=forever.record_nullifier,
        attested_at=cut - 1,
        expiry=cut,
        message={"expiry": cut + 365 * DAY},
    )
    with reverts(
        settlement.ClaimSettlementAttestationTooLong, attestedAt=cut - 1, expiry=cut + 365 * DAY
    ):
        settlement.submitClaim(forever.as_tuple(), sender=relayer)
    chain.pending_timestamp = cut - 1 + ttl + 1
    with reverts(settlement.ClaimSettlementAttestationExpired, expiry=cut - 1 + ttl):
        settlement.submitClaim(backdated.as_tuple(), sender=relayer, gas=2_000_000)


def test_only_the_insurer_sets_trust(settlement, eth_setup, stranger, hospital):
    pool_id, _, _ = eth_setup
    with reverts(settlement.ClaimSettlementNotInsurer, poolId=pool_id, account=stranger.address):
        settlement.setHospitalTrust(pool_id, hospital.address, False, sender=stranger)
    assert settlement.isHospitalTrusted(pool_id, hospital.address)


# ------------------------------------------------------------------------------------------ finding 3


@pytest.fixture(scope="session")
def attack_burner(project, deployer):
    """An ERC-1271 'hospital' whose isValidSignature burns every unit of gas it gets."""
    return deployer.deploy(project.MockGasBurningWallet)


def test_gas_burning_wallet_fails_only_its_own_claim(
    settlement,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    attack_burner,
    hospital,
    relayer,
    copier,
):
    pool_id = make_pool(trust=(attack_burner,))
    product_id = make_product(pool_id)
    policies = [make_policy(product_id) for _ in range(3)]
    good = make_claim(policies[0])
    burn = make_claim(policies[1], hospital_address=attack_burner.address)
    also_good = make_claim(policies[2])
    batch = [c.as_tuple() for c in (good, burn, also_good)]
    receipt = settlement.submitClaims(batch, sender=relayer, gas=8_000_000)
    assert [e.policyId for e in events(receipt, settlement, "ClaimPaid")] == [
        policies[0],
        policies[2],
    ]
    [rejected] = events(receipt, settlement, "ClaimRejected")
    assert (rejected.index, rejected.policyId) == (1, policies[1])
    reason = bytes(rejected.reason)
    assert reason[:4] == selector("ClaimSettlementInvalidAttestation(address)")
    # The wallet got ERC1271_GAS_LIMIT, not the batch's gas.
    assert receipt.gas_used < 3 * 150_000 + settlement.ERC1271_GAS_LIMIT()
    # Alone, it is the same named error.
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=attack_burner.address):
        settlement.submitClaim(burn.as_tuple(), sender=copier)


def test_batch_without_gas_for_the_next_stipend_reverts_by_name(
    settlement, make_pool, make_product, make_policy, make_claim, relayer
):
    """Too little gas for the next claim's full stipend: the named error, not an out-of-gas that
    would have failed that claim (and, before, the whole batch) for the sender's gas limit."""
    product_id = make_product(make_pool())
    claims = [make_claim(make_policy(product_id)).as_tuple() for _ in range(3)]
    stipend = settlement.CLAIM_GAS_STIPEND()
    needed = stipend + stipend // 63 + 60_000  # + ClaimSettlement._BATCH_CLAIM_OVERHEAD
    with reverts(settlement.ClaimSettlementBatchGasTooLow, index=1, needed=needed):
        # room for the first claim's stipend, not for the second's
        settlement.submitClaims(claims, sender=relayer, gas=needed + 100_000)
    # With the gas ape estimates, all three settle.
    receipt = settlement.submitClaims(claims, sender=relayer)
    assert len(events(receipt, settlement, "ClaimPaid")) == 3


def test_claim_that_eats_its_whole_stipend_fails_alone(
    settlement, make_pool, make_product, make_policy, make_claim, verifier, deployer, relayer
):
    """The diagnostic model's verifier burns every unit of gas it gets: that claim is rejected
    once it has spent CLAIM_GAS_STIPEND, and the claim after it (another model) still settles."""
    pool_id = make_pool()
    heavy = make_claim(make_policy(make_product(pool_id)))
    c = fresh_commitment()
    light = make_claim(
        make_policy(make_product(pool_id, model=EVAL_MODEL, threshold=0)),
        commitment=c,
        instances=[c, encode_signed(ONE), 0, 0, 0, 0, 0, 0],  # the evaluation layout
    )
    verifier.setMode(BURN_GAS, sender=deployer)
    receipt = settlement.submitClaims(
        [heavy.as_tuple(), light.as_tuple()], sender=relayer, gas=5_000_000
    )
    [rejected] = events(receipt, settlement, "ClaimRejected")
    assert (rejected.index, rejected.policyId) == (0, heavy.policy_id)
    assert events(receipt, settlement, "ClaimPaid")[0].policyId == light.policy_id
    stipend = settlement.CLAIM_GAS_STIPEND()
    assert stipend < receipt.gas_used < stipend + 400_000


# ------------------------------------------------------------------------------------------ finding 4


def test_wallets_sharing_an_owner_key_do_not_accept_each_others_attestations(
    project, settlement, eth_setup, make_claim, deployer, insurer, hospital, relayer
):
    """Two ERC-1271 hospitals owned by one key: the pool trusts B only. A's attestation (naming A)
    presented as B's is refused; B's own is paid."""
    pool_id, _, policy_id = eth_setup
    wallet_a = deployer.deploy(project.MockERC1271Wallet, hospital.address)
    wallet_b = deployer.deploy(project.MockERC1271Wallet, hospital.address)
    settlement.setHospitalTrust(pool_id, wallet_b.address, True, sender=insurer)
    as_a = make_claim(policy_id, signer=hospital, sign_hospital=wallet_a.address)
    as_a.hospital = wallet_b.address
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=wallet_b.address):
        settlement.submitClaim(as_a.as_tuple(), sender=relayer)
    as_b = make_claim(policy_id, signer=hospital, hospital_address=wallet_b.address)
    assert events(settlement.submitClaim(as_b.as_tuple(), sender=relayer), settlement, "ClaimPaid")


def test_attestation_for_another_pool_is_refused(
    settlement, eth_setup, make_claim, relayer, hospital
):
    pool_id, _, policy_id = eth_setup
    claim = make_claim(policy_id, sign_pool_id=pool_id + 1)
    with reverts(settlement.ClaimSettlementInvalidAttestation, hospital=hospital.address):
        settlement.submitClaim(claim.as_tuple(), sender=relayer)


# ------------------------------------------------------------------------------------------ finding 5


@pytest.mark.parametrize("mode", ["one-byte", "non-bool"])
def test_malformed_verifier_output_is_the_named_error(
    settlement, eth_setup, make_claim, relayer, verifier, deployer, mode
):
    _, _, policy_id = eth_setup
    verifier.setMode(RETURN_SHORT if mode == "one-byte" else RETURN_NON_BOOL, sender=deployer)
    with reverts(settlement.ModelRegistryProofRejected, modelId=DIAG_MODEL, version=1):
        settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
