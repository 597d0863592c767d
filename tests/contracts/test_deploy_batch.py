"""prover.deploy registers a bundle's batch verifier next to its single verifier (real bundle)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prover.deploy import Deployer, instance_layout, model_id, verifier_container

from .conftest import code_hash
from .helpers import reverts

NAME = "zkcare/breast_cancer_lr"


@pytest.fixture
def deploy_batch_deployer(project, chain, deployer, tmp_path: Path, diagnostic_bundle):
    """A Deployer with a fresh registry and the diagnostic model v1 registered (no batch yet)."""
    lines: list[str] = []
    d = Deployer(
        deployer,
        tmp_path / f"{chain.chain_id}.json",
        {"chainId": chain.chain_id, "contracts": {}, "models": {}},
        lines.append,
    )
    registry = d.contract("ModelRegistry", project.ModelRegistry, deployer.address)
    registry.grantRole(registry.REGISTRAR_ROLE(), deployer, sender=deployer)
    verifier = d.contract(diagnostic_bundle.contract_name, verifier_container(diagnostic_bundle))
    layout = instance_layout(diagnostic_bundle)
    assert d.register_model(registry, NAME, 1, verifier, diagnostic_bundle, layout)
    return d, registry, lines


def test_batch_verifier_is_deployed_registered_and_recorded(
    deploy_batch_deployer, diagnostic_bundle, chain
):
    d, registry, lines = deploy_batch_deployer
    assert d.register_batch_verifier(registry, NAME, 1, diagnostic_bundle) is True
    record = registry.getBatchVerifier(model_id(NAME), 1)
    entry = d.data["contracts"][diagnostic_bundle.manifest["batch_verifier"]["contract"]]
    assert record.verifier == entry["address"]
    assert bytes(record.codeHash) == code_hash(chain, record.verifier)
    assert d.data["models"][NAME]["batchVerifier"] == {
        "address": entry["address"],
        "codeHash": entry["codeHash"],
    }
    # again: nothing sent, the pinned one kept
    assert d.register_batch_verifier(registry, NAME, 1, diagnostic_bundle) is False
    assert lines[-1] == f"model {NAME} v1: batch verifier already registered"


def test_a_bundle_without_batch_verifier_registers_only_the_single(
    deploy_batch_deployer, diagnostic_bundle
):
    d, registry, lines = deploy_batch_deployer
    manifest: dict[str, Any] = copy.deepcopy(diagnostic_bundle.manifest)
    manifest["batch_verifier"] = {"error": "anchor 'pairing' occurs 0 times"}
    unbatched = SimpleNamespace(manifest=manifest, card=None)
    assert d.register_batch_verifier(registry, NAME, 1, unbatched) is False
    assert lines[-1] == (
        f"model {NAME} v1: no batch verifier (anchor 'pairing' occurs 0 times); "
        "claims settle singly"
    )
    assert int(registry.getBatchVerifier(model_id(NAME), 1).verifier, 16) == 0


def test_a_revoked_version_gets_no_batch_verifier(
    deploy_batch_deployer, diagnostic_bundle, deployer, guardian
):
    d, registry, lines = deploy_batch_deployer
    registry.grantRole(registry.GUARDIAN_ROLE(), guardian, sender=deployer)
    registry.revokeModel(model_id(NAME), 1, sender=guardian)
    assert d.register_batch_verifier(registry, NAME, 1, diagnostic_bundle) is False
    assert "not active with this verifying key" in lines[-1]


def test_a_non_registrar_cannot_register_the_batch_verifier(
    deploy_batch_deployer, diagnostic_bundle, stranger
):
    d, registry, _ = deploy_batch_deployer
    d.account = stranger
    with reverts(
        registry.AccessControlUnauthorizedAccount,
        account=stranger.address,
        neededRole=registry.REGISTRAR_ROLE(),
    ):
        d.register_batch_verifier(registry, NAME, 1, diagnostic_bundle)
    assert int(registry.getBatchVerifier(model_id(NAME), 1).verifier, 16) == 0
