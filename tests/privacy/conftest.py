"""Privacy runs on anvil: a bundle registered, a product, one paid and one denied claim.

Each run deploys its own registry + settlement + bounty (recorded in its own manifest, as
``ape run deploy`` does), registers the bundle through :func:`prover.operations.register_model`
(the path ``ape run manage model register`` takes), creates a product, issues two policies and
settles one claim each with real EZKL proofs. The blocks it mined are what the scan reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_utils import keccak
from models.decision_zoo import (
    DecisionZooModel,
    build,
    float_scores,
    make_argmax_classifier,
    make_threshold_mlp,
)

from prover import operations as ops
from prover.attestation import Attestation, sign_attestation
from prover.deploy import Deployer
from prover.models.build import LoadedModel, ModelProof, prove_record
from prover.zk import proof as proofs_io
from prover.zk.circuit import Bundle
from prover.zk.commitment import KZG_SALT_LIMBS

E18 = 10**18


@dataclass
class PrivacyRun:
    """One run's deployment, what it settled and the blocks it mined."""

    deployment: ops.Deployment
    model: str
    bundle: Bundle
    pool_id: int
    product_id: int
    first_block: int
    last_block: int
    rows: np.ndarray  # the two claimed records: paid, denied
    scores: np.ndarray  # the float model's outputs on them
    raw: list[int]  # the plain circuit's quantized outputs on them (field words)
    proofs: list[ModelProof]
    receipts: list[Any]


@pytest.fixture(scope="session")
def privacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("privacy")


@pytest.fixture(scope="session")
def privacy_models(privacy_dir: Path) -> dict[str, tuple[DecisionZooModel, float | None]]:
    threshold, t = make_threshold_mlp(privacy_dir / "models")
    return {
        "threshold": (threshold, t),
        "argmax": (make_argmax_classifier(privacy_dir / "models"), None),
    }


@pytest.fixture(scope="session")
def privacy_bundles(
    privacy_models: dict[str, tuple[DecisionZooModel, float | None]], privacy_dir: Path
) -> dict[str, Bundle]:
    """Decision bundles of both models, and the threshold model built plain (the control)."""
    out = privacy_dir / "bundles"
    return {
        "threshold": build(privacy_models["threshold"][0], out),
        "argmax": build(privacy_models["argmax"][0], out),
        "plain": build(privacy_models["threshold"][0], out, decide=False),
        "plain_argmax": build(privacy_models["argmax"][0], out, decide=False),
    }


@pytest.fixture(scope="session")
def privacy_hospital() -> Any:
    return Account.from_key(keccak(text="zkcare privacy hospital"))


@pytest.fixture(scope="session")
def privacy_deploy(
    project: Any, accounts: Any, privacy_dir: Path
) -> Callable[[str], ops.Deployment]:
    """A fresh registry + settlement + bounty in their own manifest directory."""

    def deploy(label: str) -> ops.Deployment:
        admin = accounts[0]
        directory = privacy_dir / "deployments" / label
        d = Deployer.open(admin, directory, lambda _m: None)
        registry = d.contract("ModelRegistry", project.ModelRegistry, admin.address)
        d.contract("ClaimSettlement", project.ClaimSettlement, registry.address, admin.address)
        d.contract("ResearchBounty", project.ResearchBounty, registry.address, 1)
        registry.grantRole(registry.REGISTRAR_ROLE(), admin.address, sender=admin)
        return ops.Deployment.load(directory)

    return deploy


def _pick(kind: str, model: DecisionZooModel, threshold: float | None) -> tuple[int, int]:
    """A held-out record the rule pays and one it denies (float model)."""
    scores = float_scores(model, model.held_out_rows)
    pays = scores[:, 0] >= threshold if kind != "argmax" else np.argmax(scores, axis=1) == 2
    return int(np.argmax(pays)), int(np.argmax(~pays))


@pytest.fixture(scope="session")
def privacy_runs(
    privacy_models: dict[str, tuple[DecisionZooModel, float | None]],
    privacy_bundles: dict[str, Bundle],
    privacy_deploy: Callable[[str], ops.Deployment],
    privacy_hospital: Any,
    accounts: Any,
    chain: Any,
    privacy_dir: Path,
) -> dict[str, PrivacyRun]:
    """Three runs: the two decision bundles, then the plain threshold bundle."""
    admin, insurer, relayer = accounts[0], accounts[1], accounts[3]
    runs = {}
    for kind in ("threshold", "argmax", "plain"):
        model, threshold = privacy_models["argmax" if kind == "argmax" else "threshold"]
        bundle = privacy_bundles[kind]
        first = chain.blocks.head.number + 1
        d = privacy_deploy(kind)
        name = f"acme/{kind}"
        ops.register_model(d, admin, str(bundle.path), 1, name=name, log=lambda _m: None)
        pool = ops.create_pool(d, insurer)
        ops.fund_pool(d, insurer, pool.id, Decimal(5))
        ops.trust_hospital(d, insurer, pool.id, privacy_hospital.address)
        if kind == "plain":
            product = ops.create_product(
                d,
                insurer,
                pool.id,
                Decimal(1),
                model=name,
                comparison=ops.Comparison.AT_LEAST,
                threshold=threshold,
            )
        else:  # a decision model: the rule defaults to "pay iff decision == 1"
            product = ops.create_product(d, insurer, pool.id, Decimal(1), model=name)
        loaded = LoadedModel.open(bundle)
        paid, denied = _pick(kind, model, threshold)
        rows = model.held_out_rows[[paid, denied]]
        proofs, receipts = [], []
        for n, row in enumerate(rows):
            holder = accounts[4 + n]
            policy = ops.issue_policy(d, insurer, product.id, str(holder.address), Decimal(1), 30)
            proof = prove_record(loaded, [float(v) for v in row], privacy_dir / "proofs" / kind)
            record = keccak(text=f"privacy-{kind}-{n}")
            attested_at = int(chain.pending_timestamp)
            expiry = attested_at + 3600
            attestation = Attestation(
                policy.id,
                pool.id,
                privacy_hospital.address,
                proof.commitment,
                record,
                attested_at,
                expiry,
            )
            signature = sign_attestation(
                privacy_hospital, attestation, chain.chain_id, str(d.settlement.address)
            )
            claim = (
                policy.id,
                privacy_hospital.address,
                attested_at,
                expiry,
                record,
                proof.commitment,
                signature,
                proof.proof.proof,
                list(proof.proof.instances),
            )
            receipts.append(d.settlement.submitClaim(claim, sender=relayer))
            proofs.append(proof)
        plain = privacy_bundles["plain_argmax" if kind == "argmax" else "plain"]
        raw = []
        for n, row in enumerate(rows):
            data = proofs_io.write_inputs(
                privacy_dir / f"raw-{kind}-{n}.json",
                [[*map(float, row), *([7.0] * KZG_SALT_LIMBS)]],
            )
            raw += list(proofs_io.gen_witness(plain, data, privacy_dir / "raw-w.json").outputs)
        runs[kind] = PrivacyRun(
            d,
            name,
            bundle,
            pool.id,
            product.id,
            first,
            chain.blocks.head.number,
            rows,
            float_scores(model, rows),
            raw,
            proofs,
            receipts,
        )
    return runs
