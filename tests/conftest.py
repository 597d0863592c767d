"""Fixtures shared by every test area: circuit bundles are built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.models.bounty_eval import (
    BENCHMARK_SIZE,
    Benchmark,
    build_eval_bundle,
    export_eval_onnx,
    held_out_benchmark,
)
from prover.models.breast_cancer import (
    Dataset,
    DiagnosisProof,
    build_diagnostic_bundle,
    diagnostic_weights,
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
def reference_eval_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DAO's reference model for the evaluation circuit (zkcare's diagnostic weights)."""
    w, b = diagnostic_weights()
    return export_eval_onnx(w, b, BENCHMARK_SIZE, tmp_path_factory.mktemp("eval") / "ref.onnx")


@pytest.fixture(scope="session")
def eval_bundle(reference_eval_onnx: Path, benchmark: Benchmark) -> Bundle:
    """The real evaluation circuit (cached under artifacts/ by content hash)."""
    return build_eval_bundle(reference_eval_onnx, benchmark)


@pytest.fixture(scope="session")
def researcher_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A researcher's private model: trained with other regularization (other weights)."""
    trained = train_diagnostic_model(tmp_path_factory.mktemp("researcher"), regularization=0.05)
    w, b = diagnostic_weights(trained.onnx_path)
    return export_eval_onnx(w, b, BENCHMARK_SIZE, trained.onnx_path.parent / "eval.onnx")
