"""Pools in quirky ERC-20s: 6 decimals, no return value (USDT-like), fee on transfer, blocklists."""

from __future__ import annotations

from .helpers import ETH, events, reverts

USD = 10**6
E18 = 10**18


def test_six_decimal_stablecoin(
    settlement, usdc, make_pool, make_product, make_policy, make_claim, patient, relayer, insurer
):
    pool_id = make_pool(usdc, fund=10_000 * USD)
    policy_id = make_policy(make_product(pool_id, payout=2_500 * USD), coverage=5_000 * USD)
    receipt = settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].amount == 2_500 * USD
    assert usdc.balanceOf(patient) == 2_500 * USD
    assert usdc.balanceOf(settlement) == settlement.getPool(pool_id).balance == 7_500 * USD
    settlement.withdrawFromPool(
        pool_id, 5_000 * USD, insurer, sender=insurer
    )  # 7_500 - 2_500 reserved
    assert usdc.balanceOf(insurer) == 5_000 * USD


def test_token_without_return_value(
    settlement, usdt, make_pool, make_product, make_policy, make_claim, patient, relayer, insurer
):
    pool_id = make_pool(usdt, fund=1_000 * USD)
    assert settlement.getPool(pool_id).balance == 1_000 * USD
    policy_id = make_policy(make_product(pool_id, payout=300 * USD), coverage=300 * USD)
    settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert usdt.balanceOf(patient) == 300 * USD
    settlement.withdrawFromPool(pool_id, 700 * USD, insurer, sender=insurer)
    assert usdt.balanceOf(settlement) == 0
    # A failing transferFrom (no allowance) reverts with the token's own error, through SafeERC20.
    usdt.mint(insurer, USD, sender=insurer)
    with reverts(
        usdt.NoReturnTokenInsufficientAllowance, spender=settlement.address, allowance=0, needed=USD
    ):
        settlement.fundPool(pool_id, USD, sender=insurer)


def test_fee_on_transfer_token(
    settlement,
    fot,
    make_pool,
    make_product,
    make_policy,
    make_claim,
    patient,
    relayer,
    insurer,
    chain,
):
    fot.mint(insurer, 1_000 * E18, sender=insurer)
    pool_id = make_pool(fot, fund=0)
    fot.approve(settlement, 1_000 * E18, sender=insurer)
    receipt = settlement.fundPool(pool_id, 1_000 * E18, sender=insurer)
    # Only what arrived (1% burned in transit) is credited.
    assert events(receipt, settlement, "PoolFunded")[0].amount == 990 * E18
    assert settlement.getPool(pool_id).balance == fot.balanceOf(settlement) == 990 * E18
    product_id = make_product(pool_id, payout=100 * E18)
    with reverts(
        settlement.ClaimSettlementInsufficientFunds,
        poolId=pool_id,
        requested=1_000 * E18,
        available=990 * E18,
    ):
        settlement.issuePolicy(
            product_id, patient, 1_000 * E18, chain.pending_timestamp + 100, sender=insurer
        )
    policy_id = make_policy(product_id, coverage=500 * E18)
    settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert fot.balanceOf(patient) == 99 * E18  # the holder bears the token's own fee
    pool = settlement.getPool(pool_id)
    assert pool.balance == fot.balanceOf(settlement) == 890 * E18
    assert pool.reserved == 400 * E18


def test_blocked_holder_is_credited_and_withdraws_elsewhere(
    settlement, usdc, make_pool, make_product, make_policy, make_claim, patient, relayer, stranger
):
    pool_id = make_pool(usdc, fund=1_000 * USD)
    policy_id = make_policy(make_product(pool_id, payout=100 * USD), coverage=100 * USD)
    usdc.setBlocked(patient, True, sender=stranger)
    receipt = settlement.submitClaim(make_claim(policy_id).as_tuple(), sender=relayer)
    assert events(receipt, settlement, "ClaimPaid")[0].amount == 100 * USD
    credited = events(receipt, settlement, "PayoutCredited")[0]
    assert (credited.account, credited.asset, credited.amount) == (
        patient.address,
        usdc.address,
        100 * USD,
    )
    assert settlement.creditOf(usdc, patient) == 100 * USD
    with reverts(
        settlement.PayoutsTransferFailed, asset=usdc.address, to=patient.address, amount=100 * USD
    ):
        settlement.withdrawCredit(usdc, patient, sender=patient)
    receipt = settlement.withdrawCredit(usdc, stranger, sender=patient)
    ev = events(receipt, settlement, "CreditWithdrawn")[0]
    assert (ev.account, ev.asset, ev.to, ev.amount) == (
        patient.address,
        usdc.address,
        stranger.address,
        100 * USD,
    )
    assert usdc.balanceOf(stranger) == 100 * USD
    with reverts(settlement.PayoutsNothingToWithdraw, account=patient.address, asset=usdc.address):
        settlement.withdrawCredit(usdc, stranger, sender=patient)


def test_eth_and_token_credits_are_separate(settlement, patient):
    assert settlement.creditOf(ETH, patient) == 0
    with reverts(settlement.PayoutsNothingToWithdraw, account=patient.address, asset=ETH):
        settlement.withdrawCredit(ETH, patient, sender=patient)
    with reverts(settlement.PayoutsZeroRecipient):
        settlement.withdrawCredit(ETH, ETH, sender=patient)
