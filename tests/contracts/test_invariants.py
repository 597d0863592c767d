"""Stateful property test (hypothesis) of ClaimSettlement + ResearchBounty against a Python model.

Invariants after every step: paid <= funded; reserved <= balance; the contract holds exactly
pool balance + credited payouts; at most one claim per input commitment and per (policy, record);
at most one payout per bounty (never awarded and reclaimed), never for a proof made for the
other researcher. Every transaction's outcome (success, or the exact named error) is predicted
by the model first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from ape.exceptions import ContractLogicError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .conftest import fresh_commitment
from .helpers import (
    AT_LEAST,
    AT_MOST,
    B_AWARDED,
    B_OPEN,
    B_RECLAIMED,
    CONTEXT_SCALE,
    ETH,
    EVAL_MODEL,
    ONE,
    b32,
    eval_instances,
    mock_proof,
)

E18 = 10**18
DAY = 86400
GRACE = 3 * DAY  # ClaimSettlement.CLAIM_GRACE_PERIOD
PAYOUTS = (
    E18,
    E18 // 2,
)  # product 0: pay 1 ETH if output >= 0; product 1: pay 0.5 ETH if output <= 0
MIN_METRIC = ONE // 2


@dataclass
class PolicyModel:
    policy_id: int
    product: int
    holder: object
    expiry: int
    reserved: int
    records: set = field(default_factory=set)
    commitments: set = field(default_factory=set)  # nullifiers are per policy


def error_name(exc: Exception) -> str:
    return type(exc).__name__


@pytest.mark.timeout(300)
def test_invariants(
    project,
    chain,
    settlement,
    bounty,
    make_pool,
    make_product,
    make_claim,
    insurer,
    patient,
    relayer,
    deployer,
    researcher,
    stranger,
):
    receiver = deployer.deploy(project.RevertingReceiver)  # a holder whose payouts get credited
    pool_id = make_pool(fund=0)
    products = [
        make_product(pool_id, threshold=0, comparison=AT_LEAST, payout=PAYOUTS[0]),
        make_product(pool_id, threshold=0, comparison=AT_MOST, payout=PAYOUTS[1]),
    ]
    bounty_deadline = chain.pending_timestamp + 25 * DAY
    receipt = bounty.createBounty(
        (ETH, E18, EVAL_MODEL, 1, CONTEXT_SCALE, MIN_METRIC, bounty_deadline),
        value=E18,
        sender=deployer,
    )
    bounty_id = receipt.decode_logs(bounty.BountyCreated)[0].bountyId
    holders = [patient, receiver]
    researchers = [researcher, stranger]

    class Machine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = chain.snapshot()
            self.funded = self.withdrawn = self.paid = 0
            self.balance = self.reserved = 0
            self.credit = 0
            self.policies: list[PolicyModel] = []
            self.commitments: set[int] = set()
            self.bounty_status = B_OPEN
            self.bounty_awards = 0
            self.eth_start = settlement.balance

        def teardown(self):
            chain.restore(self.snapshot)

        def expect(self, expected_error, fn, *args, **kwargs):
            """Run a tx; assert it succeeds iff expected_error is None, else reverts with that error."""
            try:
                receipt = fn(*args, **kwargs)
            except ContractLogicError as exc:
                assert expected_error is not None, f"unexpected revert {exc!r}"
                assert error_name(exc) == expected_error, f"expected {expected_error}, got {exc!r}"
                return None
            assert expected_error is None, f"expected {expected_error}, but it succeeded"
            return receipt

        # ------------------------------------------------------------------ settlement rules

        @initialize(amount=st.integers(2 * E18, 5 * E18))
        def start(self, amount):
            self.fund(amount)
            self.issue(0, 0, E18 * 3 // 2)
            self.issue(1, 1, E18)

        @rule(amount=st.integers(1, 3 * E18))
        def fund(self, amount):
            self.expect(None, settlement.fundPool, pool_id, amount, value=amount, sender=insurer)
            self.funded += amount
            self.balance += amount

        @rule(
            product=st.sampled_from([0, 1]),
            holder=st.sampled_from([0, 1]),
            coverage=st.integers(E18 // 10, 3 * E18),
        )
        def issue(self, product, holder, coverage):
            expiry = chain.pending_timestamp + 15 * DAY
            ok = coverage <= self.balance - self.reserved
            receipt = self.expect(
                None if ok else "ClaimSettlementInsufficientFunds",
                settlement.issuePolicy,
                products[product],
                holders[holder],
                coverage,
                expiry,
                sender=insurer,
            )
            if receipt:
                policy_id = receipt.decode_logs(settlement.PolicyIssued)[0].policyId
                self.policies.append(
                    PolicyModel(policy_id, product, holders[holder], expiry, coverage)
                )
                self.reserved += coverage

        @precondition(lambda self: self.policies)
        @rule(data=st.data(), positive=st.booleans())
        def claim(self, data, positive):
            self._claim(
                data.draw(st.sampled_from(self.policies)), fresh_commitment(), None, positive
            )

        @precondition(lambda self: self.policies)
        @rule(data=st.data())
        def claim_on_latest_policy(self, data):
            self._claim(self.policies[-1], fresh_commitment(), None, data.draw(st.booleans()))

        @precondition(lambda self: self.commitments)
        @rule(
            data=st.data(),
            positive=st.booleans(),
            reuse_commitment=st.booleans(),
            reuse_record=st.booleans(),
        )
        def replay_claim(self, data, positive, reuse_commitment, reuse_record):
            """Reuse a spent commitment (same proof) and/or a spent record, possibly on another policy."""
            policy = data.draw(st.sampled_from(self.policies))
            commitment = (
                data.draw(st.sampled_from(sorted(self.commitments))) if reuse_commitment else None
            )
            spent = sorted(r for p in self.policies for r in p.records)
            record = data.draw(st.sampled_from(spent)) if reuse_record else None
            self._claim(policy, commitment or fresh_commitment(), record, positive)

        def _claim(self, policy, commitment, record, positive):
            record = record or b32(f"record-{commitment}-{policy.policy_id}")
            output = ONE if positive else -ONE
            claim = make_claim(policy.policy_id, output, commitment=commitment, record=record)
            now = chain.pending_timestamp
            if now > policy.expiry + GRACE:
                expected = "ClaimSettlementPolicyExpired"
            elif now > policy.expiry:  # in the grace, but attested (now) after expiry
                expected = "ClaimSettlementAttestedAfterExpiry"
            elif policy.reserved == 0:
                expected = "ClaimSettlementCoverageExhausted"
            elif record in policy.records:
                expected = "ClaimSettlementRecordAlreadyClaimed"
            elif commitment in policy.commitments:
                expected = "ClaimSettlementCommitmentAlreadyUsed"
            else:
                expected = None
            chain.pending_timestamp = now
            receipt = self.expect(
                expected, settlement.submitClaim, claim.as_tuple(), sender=relayer
            )
            if receipt is None:
                return
            self.commitments.add(commitment)
            policy.commitments.add(commitment)
            policy.records.add(record)
            eligible = output >= 0 if policy.product == 0 else output <= 0
            paid = receipt.decode_logs(settlement.ClaimPaid)
            assert len(paid) == int(eligible)
            assert len(receipt.decode_logs(settlement.ClaimDenied)) == int(not eligible)
            if eligible:
                amount = min(PAYOUTS[policy.product], policy.reserved)
                assert paid[0].amount == amount
                policy.reserved -= amount
                self.reserved -= amount
                self.balance -= amount
                self.paid += amount
                if policy.holder == receiver:
                    self.credit += amount

        @rule(amount=st.integers(0, 4 * E18))
        def withdraw(self, amount):
            available = self.balance - self.reserved
            expected = (
                "PayoutsInvalidAmount"
                if amount == 0
                else "ClaimSettlementInsufficientFunds"
                if amount > available
                else None
            )
            if self.expect(
                expected, settlement.withdrawFromPool, pool_id, amount, insurer, sender=insurer
            ):
                self.balance -= amount
                self.withdrawn += amount

        @precondition(lambda self: self.policies)
        @rule(data=st.data())
        def release(self, data):
            policy = data.draw(st.sampled_from(self.policies))
            now = chain.pending_timestamp
            expected = (
                "ClaimSettlementPolicyNotExpired"
                if now <= policy.expiry + GRACE
                else "ClaimSettlementCoverageExhausted"
                if policy.reserved == 0
                else None
            )
            chain.pending_timestamp = now
            if self.expect(expected, settlement.releasePolicy, policy.policy_id, sender=stranger):
                self.reserved -= policy.reserved
                policy.reserved = 0

        @rule(days=st.integers(1, 8))
        def advance_time(self, days):
            chain.mine(deltatime=days * DAY)

        # ------------------------------------------------------------------ bounty rules

        @rule(
            action=st.sampled_from(["submit", "submit", "reclaim"]),
            who=st.sampled_from([0, 1]),
            good=st.booleans(),
            forged=st.booleans(),
        )
        def bounty_step(self, action, who, good, forged):
            if action == "reclaim":
                self._bounty_reclaim()
            else:
                self._bounty_submit(who, good, forged)

        def _bounty_submit(self, who, good, forged):
            """Commit and reveal; ``forged``: with a proof made for the other researcher."""
            account = researchers[who]
            weights = 1000 + who
            salt = b32(
                f"bounty-salt-{who}-{good}-{len(self.commitments)}-{chain.blocks.head.number}"
            )
            bounty.commit(
                bounty.submissionCommitment(bounty_id, account, weights, salt), sender=account
            )
            metric = MIN_METRIC if good else MIN_METRIC - 1
            proven_for = researchers[1 - who] if forged else account
            instances = eval_instances(bounty, bounty_id, proven_for, weights, metric)
            now = chain.pending_timestamp
            expected = (
                "ResearchBountyAlreadyAwarded"
                if self.bounty_status == B_AWARDED
                else "ResearchBountyAlreadyReclaimed"
                if self.bounty_status == B_RECLAIMED
                else "ResearchBountyDeadlinePassed"
                if now >= bounty_deadline
                else "ResearchBountyContextMismatch"
                if forged
                else "ResearchBountyMetricBelowMinimum"
                if not good
                else None
            )
            chain.pending_timestamp = now
            if self.expect(
                expected,
                bounty.reveal,
                bounty_id,
                account,
                weights,
                salt,
                mock_proof(instances),
                instances,
                sender=account,
            ):
                self.bounty_status = B_AWARDED
                self.bounty_awards += 1

        def _bounty_reclaim(self):
            now = chain.pending_timestamp
            expected = (
                "ResearchBountyAlreadyAwarded"
                if self.bounty_status == B_AWARDED
                else "ResearchBountyAlreadyReclaimed"
                if self.bounty_status == B_RECLAIMED
                else "ResearchBountyDeadlineNotReached"
                if now < bounty_deadline
                else None
            )
            chain.pending_timestamp = now
            if self.expect(expected, bounty.reclaim, bounty_id, sender=stranger):
                self.bounty_status = B_RECLAIMED

        # ------------------------------------------------------------------ invariants

        @invariant()
        def pool_accounting(self):
            pool = settlement.getPool(pool_id)
            assert (pool.balance, pool.reserved) == (self.balance, self.reserved)
            assert pool.reserved <= pool.balance
            assert self.paid <= self.funded
            assert self.funded - self.withdrawn - self.paid == pool.balance
            assert settlement.creditOf(ETH, receiver) == self.credit
            assert settlement.balance - self.eth_start == pool.balance + self.credit
            assert sum(p.reserved for p in self.policies) == pool.reserved

        @invariant()
        def nullifiers(self):
            claims = sum(len(p.commitments) for p in self.policies)
            assert settlement.claimCount() == claims
            assert sum(len(p.records) for p in self.policies) == claims
            for p in self.policies:
                for c in p.commitments:
                    assert settlement.claimOfCommitment(p.policy_id, c) != 0

        @invariant()
        def single_bounty_payout(self):
            assert self.bounty_awards <= 1
            b = bounty.getBounty(bounty_id)
            assert b.status == self.bounty_status
            assert bounty.balance == (E18 if b.status == B_OPEN else 0)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=10,
            stateful_step_count=16,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
