"""Generate, mark, compile and size-check the Solidity verifier for a circuit bundle."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.exceptions import CompilationFailed, VerifierGenerationError, VerifierTooLarge
from prover.toolchain import solc_binary, solc_version
from prover.zk import ezkl_api

#: EIP-170: maximum deployed bytecode size.
EIP170_LIMIT = 24_576
OPTIMIZER_RUNS = 200
EVM_VERSION = "cancun"
_CONTRACT_RE = re.compile(r"\bcontract\s+Halo2Verifier\b")


@dataclass(frozen=True)
class CompiledContract:
    """ABI and bytecode of one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def generate_verifier(
    vk: Path, settings: Path, srs: Path, out: Path, contract_name: str, header: dict[str, str]
) -> str:
    """Have EZKL write the verifier, check it is complete, rename it and add the header."""
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", contract_name):
        raise VerifierGenerationError(f"invalid Solidity contract name {contract_name!r}")
    raw = out.with_suffix(".ezkl.sol")
    raw.unlink(missing_ok=True)
    ezkl_api.create_evm_verifier(vk, settings, raw, out.with_suffix(".abi.json"), srs)
    source = raw.read_text() if raw.is_file() else ""
    raw.unlink(missing_ok=True)
    out.with_suffix(".abi.json").unlink(missing_ok=True)
    if not (
        _CONTRACT_RE.search(source)
        and "function verifyProof(" in source
        and source.rstrip().endswith("}")
        and source.count("{") == source.count("}")
    ):
        raise VerifierGenerationError(f"EZKL wrote an incomplete verifier ({len(source)} bytes)")
    lines = [
        "// GENERATED FILE - DO NOT EDIT. Regenerate with `python -m prover build`.",
        f"// Generator: zkcare prover.verifier via EZKL {ezkl_api.EZKL_VERSION} "
        "create_evm_verifier",
    ] + [f"// {key}: {value}" for key, value in header.items()]
    body = _CONTRACT_RE.sub(f"contract {contract_name}", source, count=1)
    body = body.replace("// SPDX-License-Identifier: MIT\n", "", 1)
    text = "// SPDX-License-Identifier: MIT\n" + "\n".join(lines) + "\n" + body
    out.write_text(text)
    return text


def compile_source(source: str, name: str, filename: str = "Verifier.sol") -> CompiledContract:
    """Compile one self-contained source with the pinned solc; returns contract ``name``."""
    contracts = compile_contracts(source, filename)
    if name not in contracts:
        raise CompilationFailed(filename, [f"no contract {name} in output (solc {solc_version()})"])
    return contracts[name]


def compile_contracts(source: str, filename: str = "Verifier.sol") -> dict[str, CompiledContract]:
    """Compile one self-contained source with the pinned solc (solcjs via the launcher)."""
    import solcx

    request = {
        "language": "Solidity",
        "sources": {filename: {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    try:
        output = solcx.compile_standard(request, solc_binary=solc_binary())
    except solcx.exceptions.SolcError as exc:
        raise CompilationFailed(filename, [str(exc).splitlines()[0]]) from exc
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise CompilationFailed(filename, errors)
    return {
        name: CompiledContract(
            name=name,
            abi=contract["abi"],
            bytecode=bytes.fromhex(contract["evm"]["bytecode"]["object"]),
            deployed_bytecode=bytes.fromhex(contract["evm"]["deployedBytecode"]["object"]),
        )
        for name, contract in output.get("contracts", {}).get(filename, {}).items()
    }


def check_eip170(contract: CompiledContract, limit: int = EIP170_LIMIT) -> None:
    """Raise :class:`VerifierTooLarge` if the deployed code would exceed EIP-170."""
    if len(contract.deployed_bytecode) > limit:
        raise VerifierTooLarge(contract.name, len(contract.deployed_bytecode), limit)


def write_artifact(path: Path, contract: CompiledContract) -> None:
    """Write a compiled contract as ``{contractName, abi, bytecode, deployedBytecode}`` JSON."""
    path.write_text(
        json.dumps(
            {
                "contractName": contract.name,
                "abi": contract.abi,
                "bytecode": "0x" + contract.bytecode.hex(),
                "deployedBytecode": "0x" + contract.deployed_bytecode.hex(),
            }
        )
    )


def build_batch_verifier(single_source: str, directory: Path) -> dict[str, Any]:
    """Produce, compile and size-check the batch verifier of a generated single verifier.

    Writes ``BatchVerifier.sol`` and ``BatchVerifier.json`` into ``directory`` and returns the
    manifest entry. A verifier the transformation does not know, or a batch verifier over
    EIP-170, raises :class:`VerifierGenerationError` (the caller decides whether that is fatal).
    """
    from prover.zk.batch import generate_batch_verifier

    batch = generate_batch_verifier(single_source)
    contracts = compile_contracts(batch.source, f"{batch.contract_name}.sol")
    compiled, inputs = contracts[batch.contract_name], contracts[batch.inputs_name]
    check_eip170(compiled)
    check_eip170(inputs)
    (directory / "BatchVerifier.sol").write_text(batch.source)
    write_artifact(directory / "BatchVerifier.json", compiled)
    return {
        "contract": batch.contract_name,
        "deployed_bytes": len(compiled.deployed_bytecode),
        "inputs_contract": batch.inputs_name,
        "inputs_deployed_bytes": len(inputs.deployed_bytecode),
        "shared_points": len(batch.shared),
    }
