"""Deploy zkcare's contracts with ape, idempotently, into ``deployments/<chain-id>.json``.

A contract is redeployed only when its init code (creation bytecode + constructor arguments)
changed or its recorded address no longer holds the recorded code. Model versions are
registered once; re-registering the same verifying key is a no-op and a different one needs
a new version (the registry tombstones, it never overwrites).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from prover.exceptions import ZkcareError
from prover.paths import ROOT
from prover.zk.circuit import Bundle

DEPLOYMENTS_DIR = Path(os.environ.get("ZKCARE_DEPLOYMENTS", ROOT / "deployments"))
DIAGNOSTIC_MODEL_NAME = "zkcare/breast_cancer_lr"
EVAL_MODEL_NAME = "zkcare/bounty_eval"
REGISTRAR_ROLE = keccak(text="REGISTRAR_ROLE")
GUARDIAN_ROLE = keccak(text="GUARDIAN_ROLE")


class DeploymentError(ZkcareError):
    """A deployment step cannot proceed (conflicting state, missing contract)."""


def model_id(name: str) -> bytes:
    """The registry key of a model: keccak256 of its name."""
    return keccak(text=name)


def instance_layout(bundle: Bundle) -> tuple[int, int, int, int, int]:
    """The registry's ``(count, input-commitment index, output index, output count, scale)``.

    A bundle built by :func:`prover.models.build.build_model` (the evaluation circuit's too)
    carries it in its model card, read from a real proof at build time.
    """
    card = bundle.card
    if card is not None:
        from prover.models.card import ModelCard

        return ModelCard.of(bundle).instance_layout.registry_tuple()
    names = bundle.manifest.get("instance_layout")
    count = len(names) if isinstance(names, list) and len(names) >= 2 else 2
    return (count, 0, count - 1, 1, bundle.output_scale)


@dataclass
class Deployer:
    """Deploys and records contracts for one chain with one ape account."""

    account: Any  # ape AccountAPI
    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @classmethod
    def open(
        cls, account: Any, directory: Path | None = None, log: Callable[[str], None] = print
    ) -> Deployer:
        """Load (or start) the manifest for the connected chain."""
        from ape import chain

        chain_id = int(chain.provider.chain_id)
        path = (directory or DEPLOYMENTS_DIR) / f"{chain_id}.json"
        data: dict[str, Any] = {"chainId": chain_id, "contracts": {}, "models": {}}
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("chainId") != chain_id:
                raise DeploymentError(f"{path} records chain {data.get('chainId')}, not {chain_id}")
        return cls(account, path, data, log)

    def save(self) -> None:
        """Write the manifest atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".partial")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, self.path)

    def contract(self, key: str, container: Any, *args: Any) -> Any:
        """Deploy ``container(*args)`` as ``key`` unless the recorded deployment is current."""
        from ape import chain

        creation = bytes(container.contract_type.deployment_bytecode.to_bytes() or b"")
        encoded = bytes(container.constructor.encode_input(*args)) if args else b""
        init_hash = "0x" + keccak(creation + encoded).hex()
        entry = self.data["contracts"].get(key)
        if entry and entry["initCodeHash"] == init_hash:
            code = bytes(chain.provider.get_code(entry["address"]))
            if code and "0x" + keccak(code).hex() == entry["codeHash"]:
                self.log(f"{key}: unchanged at {entry['address']}")
                return container.at(entry["address"])
        instance = self.account.deploy(container, *args)
        receipt = instance.creation_metadata.receipt if instance.creation_metadata else None
        code = bytes(chain.provider.get_code(instance.address))
        self.data["contracts"][key] = {
            "address": str(instance.address),
            "txHash": str(instance.txn_hash),
            "blockNumber": int(receipt.block_number) if receipt else None,
            "gasUsed": int(receipt.gas_used) if receipt else None,
            "codeHash": "0x" + keccak(code).hex(),
            "initCodeHash": init_hash,
        }
        self.save()
        self.log(f"{key}: deployed at {instance.address}")
        return instance

    def register_model(
        self,
        registry: Any,
        name: str,
        version: int,
        verifier: Any,
        bundle: Bundle,
        layout: tuple[int, int, int, int, int],
        *,
        defer_to_newer: bool = True,
    ) -> bool:
        """Register ``bundle``'s verifier as ``name`` v``version`` unless already registered.

        The manifest names one version per model, the newest registered. With
        ``defer_to_newer`` (``deploy all``), a version older than the recorded one is left
        alone, so re-running the deployment after an operator upgrade (``ape run manage
        model register``) changes nothing. Returns whether a registration was sent.
        """
        recorded = int(self.data["models"].get(name, {}).get("version", 0))
        if defer_to_newer and recorded > version:
            self.log(f"model {name} v{version}: superseded by v{recorded} in the manifest")
            return False
        mid = model_id(name)
        vk = bytes.fromhex(bundle.manifest["sha256"]["vk"])
        current = registry.getModelVersion(mid, version)
        status = int(current.status)
        sent = False
        if status == 1 and bytes(current.vkSha256) == vk:
            self.log(f"model {name} v{version}: already registered")
        elif status != 0:
            state = "registered with another verifying key" if status == 1 else "revoked"
            raise DeploymentError(f"model {name} v{version} is {state}; register a new version")
        else:
            from ape import chain

            code = bytes(chain.provider.get_code(verifier.address))
            registry.registerModel(
                mid,
                version,
                verifier.address,
                keccak(code),
                bytes.fromhex(bundle.manifest["sha256"]["onnx"]),
                vk,
                layout,
                sender=self.account,
            )
            sent = True
            self.log(f"model {name} v{version}: registered")
        decisions = dict(self.data["models"].get(name, {}).get("decisions", {}))
        card = bundle.card or {}
        if card.get("decision"):  # a decision model: the rule is compiled into the circuit
            decisions[str(version)] = {
                "vkSha256": bundle.manifest["sha256"]["vk"],
                **card["decision"],
            }
        if decisions and version < recorded:  # an older version: the entry stays the newer's
            self.data["models"][name]["decisions"] = decisions
            self.save()
        if version >= recorded:
            self.data["models"][name] = {
                **({"decisions": decisions} if decisions else {}),
                "modelId": "0x" + mid.hex(),
                "version": version,
                "verifier": str(verifier.address),
                "vkSha256": bundle.manifest["sha256"]["vk"],
                "onnxSha256": bundle.manifest["sha256"]["onnx"],
                "layout": list(layout),
                "srs": bundle.manifest["srs"]["label"],
            }
            self.save()
        return sent

    def register_batch_verifier(
        self, registry: Any, name: str, version: int, bundle: Bundle, key: str | None = None
    ) -> bool:
        """Deploy ``bundle``'s batch verifier (unless current) and register it next to v``version``.

        A version not active with this bundle's verifying key (revoked, superseded) and a
        bundle without a batch verifier register nothing (the log says why): such claims settle
        through the single verifier. A version that already has a batch verifier keeps it (it
        is pinned). Returns whether a registration was sent.
        """
        container = batch_verifier_container(bundle)
        if container is None:
            why = batch_verifier_missing_reason(bundle)
            self.log(f"model {name} v{version}: no batch verifier ({why}); claims settle singly")
            return False
        mid = model_id(name)
        current = registry.getModelVersion(mid, version)
        if int(current.status) != 1 or bytes(current.vkSha256) != bytes.fromhex(
            bundle.manifest["sha256"]["vk"]
        ):
            self.log(
                f"model {name} v{version}: not active with this verifying key, "
                "no batch verifier registered"
            )
            return False
        record = registry.getBatchVerifier(mid, version)
        if int(record.verifier, 16) != 0:
            self.log(f"model {name} v{version}: batch verifier already registered")
            self._record_batch(name, version, str(record.verifier), bytes(record.codeHash))
            return False
        from ape import chain

        key = key or str(bundle.manifest["batch_verifier"]["contract"])
        batch = self.contract(key, container)
        code_hash = keccak(bytes(chain.provider.get_code(batch.address)))
        registry.registerBatchVerifier(mid, version, batch.address, code_hash, sender=self.account)
        self.log(f"model {name} v{version}: batch verifier registered")
        self._record_batch(name, version, str(batch.address), code_hash)
        return True

    def _record_batch(self, name: str, version: int, address: str, code_hash: bytes) -> None:
        entry = self.data["models"].get(name)
        if entry is None or int(entry.get("version", 0)) != version:
            return  # the manifest's entry is another (newer) version's
        entry["batchVerifier"] = {"address": address, "codeHash": "0x" + code_hash.hex()}
        self.save()


def verifier_container(bundle: Bundle) -> Any:
    """An ape ContractContainer for a bundle's generated verifier."""
    return _container(bundle.verifier_artifact)


def batch_verifier_container(bundle: Bundle) -> Any | None:
    """An ape ContractContainer for a bundle's batch verifier, or ``None`` if it has none.

    The manifest's ``batch_verifier`` section names the contract, or records (``error``) why the
    build could not make one; bundles built before batch verifiers existed have no section.
    """
    section = bundle.manifest.get("batch_verifier") or {}
    if "contract" not in section:
        return None
    return _container(bundle.batch_verifier_artifact)


def batch_verifier_missing_reason(bundle: Bundle) -> str:
    """Why ``bundle`` has no batch verifier (the build's recorded error, or an older bundle)."""
    section = bundle.manifest.get("batch_verifier") or {}
    return str(section.get("error") or "the bundle was built without a batch verifier")


def _container(art: dict[str, Any]) -> Any:
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType

    return ContractContainer(
        ContractType.model_validate(
            {
                "contractName": art["contractName"],
                "abi": art["abi"],
                "deploymentBytecode": {"bytecode": art["bytecode"]},
                "runtimeBytecode": {"bytecode": art["deployedBytecode"]},
            }
        )
    )


def deploy_all(
    account: Any,
    *,
    min_reveal_delay: int = 1,
    srs_file: Path | None = None,
    directory: Path | None = None,
    log: Callable[[str], None] = print,
    diagnostic: Bundle | None = None,
) -> Deployer:
    """Build bundles, deploy verifiers + registry + settlement + bounty, register models.

    The diagnostic model is registered as its decision bundle ("pay if malignant" compiled
    into the circuit, :func:`prover.models.breast_cancer.build_decision_bundle`): its proofs'
    only public output is the 0/1 decision, never the logit. ``diagnostic`` registers another
    bundle instead (the privacy tests' contrast: the plain bundle, whose output is the logit).
    """
    from ape import project

    from prover.models.bounty_eval import benchmark_info, build_eval_bundle, context_scale
    from prover.models.breast_cancer import build_decision_bundle

    diag = diagnostic or build_decision_bundle(srs_file=srs_file)
    evaluation = build_eval_bundle(srs_file=srs_file)
    d = Deployer.open(account, directory, log)
    d.data["deployer"] = str(account.address)
    diag_verifier = d.contract(diag.contract_name, verifier_container(diag))
    eval_verifier = d.contract(evaluation.contract_name, verifier_container(evaluation))
    registry = d.contract("ModelRegistry", project.ModelRegistry, account.address)
    settlement = d.contract(
        "ClaimSettlement", project.ClaimSettlement, registry.address, account.address
    )
    bounty = d.contract(
        "ResearchBounty", project.ResearchBounty, registry.address, min_reveal_delay
    )
    for role in (REGISTRAR_ROLE, GUARDIAN_ROLE):
        if not registry.hasRole(role, account.address):
            registry.grantRole(role, account.address, sender=account)
    d.register_model(registry, DIAGNOSTIC_MODEL_NAME, 1, diag_verifier, diag, instance_layout(diag))
    d.register_model(
        registry, EVAL_MODEL_NAME, 1, eval_verifier, evaluation, instance_layout(evaluation)
    )
    # Claims batch through the diagnostic model's batch verifier (ClaimSettlement
    # .submitClaimsBatched); the bounty verifies one reveal at a time, so the evaluation
    # circuit's batch verifier is not deployed.
    d.register_batch_verifier(registry, DIAGNOSTIC_MODEL_NAME, 1, diag)
    size, sha256 = benchmark_info(evaluation)
    d.data["evaluation"] = {
        "benchmarkSize": size,
        "benchmarkSha256": sha256,
        "contextScale": context_scale(evaluation),
    }
    d.save()
    _ = (settlement, bounty)
    return d
