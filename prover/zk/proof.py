"""Witness, proof, local verification and EVM calldata — one function each, typed results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector

from prover.exceptions import ProofError
from prover.zk import ezkl_api
from prover.zk.circuit import Bundle
from prover.zk.fields import felt_from_hex, fixed_to_float

VERIFY_SELECTOR = function_signature_to_4byte_selector("verifyProof(bytes,uint256[])")


@dataclass(frozen=True)
class Witness:
    """A witness file and its public values."""

    path: Path
    input_commitments: tuple[int, ...]
    param_commitments: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def input_commitment(self) -> int | None:
        """The first (for single-input models: the only) input commitment."""
        return self.input_commitments[0] if self.input_commitments else None


@dataclass(frozen=True)
class Proof:
    """A proof: its bytes and public instances (commitment first, then outputs)."""

    path: Path
    proof: bytes
    instances: tuple[int, ...]

    @classmethod
    def load(cls, path: Path) -> Proof:
        """Read an EZKL proof JSON file."""
        data = json.loads(path.read_text())
        try:
            proof_hex = data["hex_proof"] or "0x" + bytes(data["proof"]).hex()
            instances = tuple(felt_from_hex(h) for group in data["instances"] for h in group)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProofError(f"{path} is not an EZKL proof file: {exc}") from exc
        return cls(path, bytes.fromhex(proof_hex.removeprefix("0x")), instances)


def write_input(path: Path, rows: Sequence[Sequence[float]]) -> Path:
    """Write EZKL input JSON for one input tensor (rows are concatenated)."""
    return write_inputs(path, [[v for row in rows for v in row]])


def write_inputs(path: Path, inputs: Sequence[Sequence[float]]) -> Path:
    """Write EZKL input JSON: one flat list of values per model input."""
    path.write_text(json.dumps({"input_data": [[float(v) for v in data] for data in inputs]}))
    return path


def gen_witness(bundle: Bundle, input_json: Path, out: Path) -> Witness:
    """Run the quantized model on ``input_json`` and write the witness."""
    data = ezkl_api.gen_witness(input_json, bundle.compiled, out)
    hashed = (data.get("processed_inputs") or {}).get("poseidon_hash") or []
    params = (data.get("processed_params") or {}).get("poseidon_hash") or []
    outputs = tuple(felt_from_hex(h) for group in data["outputs"] for h in group)
    return Witness(
        out,
        tuple(felt_from_hex(h) for h in hashed),
        tuple(felt_from_hex(h) for h in params),
        outputs,
    )


def prove(bundle: Bundle, witness: Witness, out: Path) -> Proof:
    """Prove the witness with the bundle's proving key."""
    ezkl_api.prove(witness.path, bundle.compiled, bundle.pk, out, bundle.srs)
    return Proof.load(out)


def verify(bundle: Bundle, proof: Proof) -> bool:
    """Verify natively (off-chain) against the bundle's verifying key."""
    return ezkl_api.verify(proof.path, bundle.settings, bundle.vk, bundle.srs)


def evm_calldata(proof: Proof) -> bytes:
    """ABI calldata for ``verifyProof(bytes proof, uint256[] instances)``."""
    return VERIFY_SELECTOR + abi_encode(
        ["bytes", "uint256[]"], [proof.proof, list(proof.instances)]
    )


def output_value(bundle: Bundle, proof: Proof, index: int = 0) -> float:
    """The model output ``index`` as a float (decoded from the signed fixed-point felt)."""
    n_outputs = sum(_size(shape) for shape in bundle.manifest["instance_shapes"])
    first = len(proof.instances) - n_outputs
    return fixed_to_float(proof.instances[first + index], bundle.output_scale)


def _size(shape: Sequence[int]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size
