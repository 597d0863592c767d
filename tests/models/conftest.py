"""Decision models (``model build --decide``) built once per session through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from prover.zk.circuit import Bundle

from .decision_zoo import DecisionZooModel, build, make_argmax_classifier, make_threshold_mlp


@pytest.fixture(scope="session")
def decision_zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decision-zoo")


@pytest.fixture(scope="session")
def decision_threshold_model(decision_zoo_dir: Path) -> tuple[DecisionZooModel, float]:
    return make_threshold_mlp(decision_zoo_dir)


@pytest.fixture(scope="session")
def decision_argmax_model(decision_zoo_dir: Path) -> DecisionZooModel:
    return make_argmax_classifier(decision_zoo_dir)


@pytest.fixture(scope="session")
def decision_threshold_bundle(
    decision_threshold_model: tuple[DecisionZooModel, float], decision_zoo_dir: Path
) -> Bundle:
    return build(decision_threshold_model[0], decision_zoo_dir / "bundles")


@pytest.fixture(scope="session")
def decision_argmax_bundle(
    decision_argmax_model: DecisionZooModel, decision_zoo_dir: Path
) -> Bundle:
    return build(decision_argmax_model, decision_zoo_dir / "bundles")
