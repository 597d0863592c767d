"""Fixtures for the batch-verifier tests: real proofs, the single and batch verifiers on anvil."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from prover.chain import ChainClient
from prover.models.breast_cancer import Dataset
from prover.zk.circuit import Bundle
from prover.zk.proof import Proof

from .support import prove_rows


@dataclass(frozen=True)
class BatchDeployment:
    """A bundle's single and batch verifiers deployed on the session's anvil."""

    bundle: Bundle
    single: str
    batch: str


@pytest.fixture(scope="session")
def batch_proofs(diagnostic_bundle: Bundle, dataset: Dataset, proof_dir: Path) -> list[Proof]:
    """Six real proofs of the diagnostic model (held-out patients 0..5)."""
    return prove_rows(diagnostic_bundle, [list(dataset.x_test[i]) for i in range(6)], proof_dir)


@pytest.fixture(scope="session")
def batch_deployment(chain_client: ChainClient, diagnostic_bundle: Bundle) -> BatchDeployment:
    """The diagnostic model's verifiers as the build produced them (Verifier/BatchVerifier.json)."""
    single = chain_client.deploy(bytes.fromhex(diagnostic_bundle.verifier_artifact["bytecode"][2:]))
    batch = chain_client.deploy(
        bytes.fromhex(diagnostic_bundle.batch_verifier_artifact["bytecode"][2:])
    )
    return BatchDeployment(diagnostic_bundle, single.address, batch.address)
