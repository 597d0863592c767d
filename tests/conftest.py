"""Fixtures shared by every test area: circuit bundles are built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.models.bounty_eval import (
    Benchmark,
    Weights,
    build_eval_bundle,
    held_out_benchmark,
    weights_of,
)
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    Dataset,
    DiagnosisProof,
    build_diagnostic_bundle,
    load_dataset,
    prove_diagnosis,
    train_diagnostic_model,
)
from prover.zk.circuit import Bundle


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="session")
def diagnostic_bundle() -> Bundle:
    """The real diagnostic circuit (cached under artifacts/ by content hash)."""
    return build_diagnostic_bundle()


@pytest.fixture(scope="session")
def proof_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proofs")


@pytest.fixture(scope="session")
def diagnosis(diagnostic_bundle: Bundle, dataset: Dataset, proof_dir: Path) -> DiagnosisProof:
    """A real proof for held-out patient 0 (malignant)."""
    return prove_diagnosis(diagnostic_bundle, list(dataset.x_test[0]), proof_dir)


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A different model (stronger regularization): same architecture, other weights."""
    models = tmp_path_factory.mktemp("other-model")
    trained = train_diagnostic_model(models, regularization=0.05)
    return build_diagnostic_bundle(
        onnx=trained.onnx_path,
        preprocess=trained.preprocess_path,
        name="other_model",
        export_verifier_to=models / "verifiers",
    )


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def chain_client(anvil_node: Anvil) -> ChainClient:
    return ChainClient(anvil_node.url, DEV_PRIVATE_KEY)


@pytest.fixture(scope="session")
def verifier_address(chain_client: ChainClient, diagnostic_bundle: Bundle) -> str:
    bytecode = bytes.fromhex(diagnostic_bundle.verifier_artifact["bytecode"][2:])
    return chain_client.deploy(bytecode).address


@pytest.fixture(scope="session")
def benchmark() -> Benchmark:
    return held_out_benchmark()


@pytest.fixture(scope="session")
def eval_bundle(benchmark: Benchmark) -> Bundle:
    """The real evaluation circuit on all 114 held-out patients (cached under artifacts/)."""
    return build_eval_bundle(benchmark)


@pytest.fixture(scope="session")
def reference_weights() -> Weights:
    """The DAO's reference model for the evaluation circuit (zkcare's diagnostic weights)."""
    return weights_of(DIAGNOSTIC_MODEL)


@pytest.fixture(scope="session")
def researcher_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A researcher's private model (an ONNX file): trained with other regularization."""
    trained = train_diagnostic_model(tmp_path_factory.mktemp("researcher"), regularization=0.05)
    return trained.onnx_path
