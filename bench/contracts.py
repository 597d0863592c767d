"""Settlement gas with real proofs: one claim, batches, a bounty payout, deploy costs.

The baselines measured in the same run are the bare generated verifier (``verifyProof`` in its
own transaction; settlement overhead = claim gas - verifier gas) and one claim through the
single verifier (``submitClaim``). Batches: ``submitClaims`` of 10 (each claim through the
single verifier, isolated), and ``submitClaimsBatched`` of 1, 2, 5, 10 and 20 claims (one
``verifyBatch`` through the batch verifier). 20 held-out patients are proved; every claim has a
policy of its own, so a proof backs one claim per policy (as a patient with two policies would).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak

from prover.attestation import Attestation, sign_attestation
from prover.deploy import batch_verifier_container, instance_layout, verifier_container
from prover.models.bounty_eval import (
    build_eval_bundle,
    context_scale,
    prove_evaluation,
    submission_context,
    weights_of,
)
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    build_diagnostic_bundle,
    load_dataset,
    prove_diagnosis,
)
from prover.zk import proof as proofs

TARGETS = {
    "claim_gas": 450_000,
    "batch10_gas_per_claim": 400_000,
    "batched10_gas_per_claim": 330_000,
    "batched10_gas_per_claim_stretch": 300_000,
}
BATCH_SIZES = (1, 2, 5, 10, 20)
E18 = 10**18
DIAG = keccak(text="zkcare/breast_cancer_lr")
EVAL = keccak(text="zkcare/bounty_eval")
ETH = "0x" + "00" * 20
AT_MOST = 1


def run() -> dict[str, Any]:
    """Deploy on an ape-managed anvil and measure."""
    from ape import accounts, chain, networks, project

    diag = build_diagnostic_bundle()
    evaluation = build_eval_bundle()
    ds = load_dataset()
    hospital = Account.create()
    out: dict[str, Any] = {"deploy_gas": {}}
    with (
        networks.parse_network_choice("ethereum:local:foundry"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        owner, holder, relayer = accounts.test_accounts[0:3]

        def deploy(name: str, container: Any, *args: Any) -> Any:
            instance = owner.deploy(container, *args)
            out["deploy_gas"][name] = int(instance.creation_metadata.receipt.gas_used)
            return instance

        diag_v = deploy("BreastCancerLrVerifier", verifier_container(diag))
        batch_container = batch_verifier_container(diag)
        if batch_container is None:
            raise RuntimeError(f"the diagnostic bundle has no batch verifier: {diag.manifest}")
        diag_batch = deploy("BreastCancerLrBatchVerifier", batch_container)
        eval_v = deploy("BountyEvalVerifier", verifier_container(evaluation))
        registry = deploy("ModelRegistry", project.ModelRegistry, owner)
        settlement = deploy("ClaimSettlement", project.ClaimSettlement, registry, owner)
        bounty = deploy("ResearchBounty", project.ResearchBounty, registry, 1)
        registry.grantRole(registry.REGISTRAR_ROLE(), owner, sender=owner)
        for mid, v, b, layout in [
            (DIAG, diag_v, diag, instance_layout(diag)),
            (EVAL, eval_v, evaluation, instance_layout(evaluation)),
        ]:
            code = bytes(chain.provider.get_code(v.address))
            registry.registerModel(
                mid,
                1,
                v,
                keccak(code),
                bytes.fromhex(b.manifest["sha256"]["onnx"]),
                bytes.fromhex(b.manifest["sha256"]["vk"]),
                layout,
                sender=owner,
            )
        batch_code = bytes(chain.provider.get_code(diag_batch.address))
        registry.registerBatchVerifier(DIAG, 1, diag_batch, keccak(batch_code), sender=owner)
        pool = settlement.createPool(ETH, sender=owner).decode_logs(settlement.PoolCreated)[0]
        settlement.fundPool(pool.poolId, 100 * E18, value=100 * E18, sender=owner)
        settlement.setHospitalTrust(pool.poolId, hospital.address, True, sender=owner)
        product = (
            settlement.createProduct(
                pool.poolId,
                DIAG,
                1,
                (AT_MOST, 0, 10**9),  # PayoutRule: AtMost on output 0
                E18,
                sender=owner,  # pays every diagnosis
            )
            .decode_logs(settlement.ProductCreated)[0]
            .productId
        )

        diagnoses = [prove_diagnosis(diag, list(ds.x_test[i]), work) for i in range(20)]

        def claim(index: int) -> tuple[Any, ...]:
            d = diagnoses[index % len(diagnoses)]
            attested_at = chain.pending_timestamp
            expiry = attested_at + 3600
            policy = settlement.issuePolicy(product, holder, E18, expiry + 86400, sender=owner)
            policy_id = policy.decode_logs(settlement.PolicyIssued)[0].policyId
            att = Attestation(
                policy_id,
                pool.poolId,
                hospital.address,
                d.commitment,
                keccak(text=f"record-{index}-{policy_id}"),
                attested_at,
                expiry,
            )
            sig = sign_attestation(hospital, att, chain.chain_id, settlement.address)
            return (
                policy_id,
                hospital.address,
                attested_at,
                expiry,
                att.record_nullifier,
                d.commitment,
                sig,
                d.proof.proof,
                list(d.proof.instances),
            )

        first = claim(0)
        verify_only = diag_v.verifyProof(first[7], first[8], sender=relayer)
        out["verifier_only_gas"] = int(verify_only.gas_used)
        one = settlement.submitClaim(first, sender=relayer)
        out["claim_gas"] = int(one.gas_used)
        batch = [claim(i) for i in range(1, 11)]
        receipt = settlement.submitClaims(batch, sender=relayer)
        out["batch10_gas"] = int(receipt.gas_used)
        out["batch10_gas_per_claim"] = int(receipt.gas_used) // 10
        out["batch10_paid"] = len(receipt.decode_logs(settlement.ClaimPaid))
        out["batched"] = {}
        for n in BATCH_SIZES:
            claims = [claim(i) for i in range(n)]
            receipt = settlement.submitClaimsBatched(claims, sender=relayer)
            paid = len(receipt.decode_logs(settlement.ClaimPaid))
            if paid != n:
                raise RuntimeError(f"batched claims: {paid} of {n} paid")
            gas = int(receipt.gas_used)
            out["batched"][str(n)] = {
                "gas": gas,
                "gas_per_claim": gas // n,
                "saving_per_claim_vs_submit_claim": out["claim_gas"] - gas // n,
                "calldata_bytes": len(settlement.submitClaimsBatched.as_transaction(claims).data),
            }

        params = (
            ETH,
            E18,
            EVAL,
            1,
            context_scale(evaluation),
            100,
            chain.pending_timestamp + 86400,
        )
        bounty_id = (
            bounty.createBounty(params, value=E18, sender=owner)
            .decode_logs(bounty.BountyCreated)[0]
            .bountyId
        )
        context = submission_context(chain.chain_id, bounty.address, bounty_id, holder.address)
        ev = prove_evaluation(evaluation, weights_of(DIAGNOSTIC_MODEL), context, work)
        salt = keccak(text="bench")
        commit = bounty.commit(
            bounty.submissionCommitment(bounty_id, holder, ev.weights_commitment, salt),
            sender=holder,
        )
        chain.mine()
        reveal = bounty.reveal(
            bounty_id,
            holder,
            ev.weights_commitment,
            salt,
            ev.proof.proof,
            list(ev.proof.instances),
            sender=holder,
        )
        eval_only = eval_v.verifyProof(ev.proof.proof, list(ev.proof.instances), sender=relayer)
        out["bounty_commit_gas"] = int(commit.gas_used)
        out["bounty_reveal_gas"] = int(reveal.gas_used)
        out["eval_verifier_only_gas"] = int(eval_only.gas_used)
        assert proofs.verify(evaluation, ev.proof)
    out["claim_overhead_gas"] = out["claim_gas"] - out["verifier_only_gas"]
    return {"contracts": out, "contracts_targets": TARGETS}


def table(data: dict[str, Any]) -> str:
    """Printed summary with the verifier-only baseline and targets."""
    c = data["contracts"]
    base = c["verifier_only_gas"]
    rows = [
        ("verifyProof alone (baseline)", base, None),
        ("one claim end to end (paid)", c["claim_gas"], TARGETS["claim_gas"]),
        (
            "submitClaims of 10, per claim",
            c["batch10_gas_per_claim"],
            TARGETS["batch10_gas_per_claim"],
        ),
        *[
            (
                f"submitClaimsBatched {n:>2}, per claim",
                row["gas_per_claim"],
                TARGETS["claim_gas"]
                if n == "1"
                else (TARGETS["batched10_gas_per_claim"] if n == "10" else None),
            )
            for n, row in c.get("batched", {}).items()
        ],
        ("bounty commit", c["bounty_commit_gas"], None),
        ("bounty reveal + payout", c["bounty_reveal_gas"], None),
        ("eval verifyProof alone", c["eval_verifier_only_gas"], None),
    ]
    out = [f"{'settlement gas':<32}{'gas':>12}{'vs verifier':>13}{'target':>22}"]
    for label, gas, target in rows:
        mark = "" if target is None else (" ok" if gas <= target else " MISSED")
        tgt = "" if target is None else f"<= {target:,}{mark}"
        out.append(f"{label:<32}{gas:>12,}{gas / base:>13.3f}{tgt:>22}")
    out.append("deploy gas: " + ", ".join(f"{k} {v:,}" for k, v in c["deploy_gas"].items()))
    return "\n".join(out)
