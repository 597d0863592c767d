"""Helpers for the batch-verifier tests: calls, verdicts, proof layout and mutations."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_abi import encode
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from prover.exceptions import EzklError
from prover.models.build import prove_record
from prover.zk import ezkl_api
from prover.zk.circuit import Bundle
from prover.zk.proof import Proof

#: BN254 base field modulus (curve coordinates).
BN254_Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583
VERIFY_BATCH = keccak(text="verifyBatch(bytes[],uint256[][])")[:4]
VERIFY_PROOF = keccak(text="verifyProof(bytes,uint256[])")[:4]
BATCH_INPUTS = keccak(text="batchInputs(bytes,uint256[])")[:4]
INPUTS_CONTRACT = keccak(text="inputsContract()")[:4]
PROOF_REJECTED = keccak(text="Halo2BatchVerifierProofRejected(uint256)")[:4]
PAIRING_FAILED = keccak(text="Halo2BatchVerifierPairingFailed()")[:4]
EMPTY_BATCH = keccak(text="Halo2BatchVerifierEmptyBatch()")[:4]
LENGTH_MISMATCH = keccak(text="Halo2BatchVerifierLengthMismatch(uint256,uint256)")[:4]


def prove_rows(bundle: Bundle, rows: Sequence[Sequence[float]], workdir: Path) -> list[Proof]:
    """Real proofs, one per raw record."""
    return [prove_record(bundle, list(row), workdir).proof for row in rows]


@dataclass(frozen=True)
class Layout:
    """Where the proof's parts lie (byte ranges), read from the generated verifier."""

    commitments: range  # witness, lookup, permutation and quotient commitments (64-byte points)
    evaluations: range  # 32-byte scalars
    w: range
    w_prime: range
    length: int


def proof_layout(verifier_source: str) -> Layout:
    """Read the point and evaluation sections from the verifier's transcript loops."""
    ends = [
        int(h, 16)
        for h in re.findall(r"proof_cptr_end := add\(proof_cptr, (0x[0-9a-f]+)\)", verifier_source)
    ]
    length = int(re.search(r"eq\((0x[0-9a-f]+), proof\.length\)", verifier_source)[1], 16)  # type: ignore[index]
    points = sum(ends[:-1])
    evals = ends[-1]
    assert points + evals + 0x80 == length, (ends, length)
    return Layout(
        range(0, points),
        range(points, points + evals),
        range(points + evals, points + evals + 0x40),
        range(points + evals + 0x40, length),
        length,
    )


def word(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 32], "big")


def put(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(32, "big") + data[offset + 32 :]


def batch_calldata(proofs: Sequence[bytes], instances: Sequence[Sequence[int]]) -> bytes:
    return VERIFY_BATCH + encode(
        ["bytes[]", "uint256[][]"], [list(proofs), [list(i) for i in instances]]
    )


def _revert_data(exc: Exception) -> bytes:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


@dataclass(frozen=True)
class Verdict:
    """A verifier's answer: accepted, or the revert data it gave."""

    accepted: bool
    revert: bytes = b""


def eth_call(w3: Web3, to: str, data: bytes) -> Verdict:
    try:
        raw = w3.eth.call({"to": to, "data": data})  # type: ignore[typeddict-item]
    except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
        return Verdict(False, _revert_data(exc))
    return Verdict(int.from_bytes(raw, "big") == 1 and len(raw) == 32, b"")


def single_verdict(w3: Web3, verifier: str, proof: bytes, instances: Sequence[int]) -> bool:
    data = VERIFY_PROOF + encode(["bytes", "uint256[]"], [proof, list(instances)])
    return eth_call(w3, verifier, data).accepted


def batch_verdict(
    w3: Web3, verifier: str, proofs: Sequence[bytes], instances: Sequence[Sequence[int]]
) -> Verdict:
    return eth_call(w3, verifier, batch_calldata(proofs, instances))


def native_verdict(
    bundle: Bundle, template: Proof, proof: bytes, instances: Sequence[int], out: Path
) -> bool:
    """``ezkl.verify`` on a proof file holding ``proof`` and ``instances`` (a parse error rejects)."""
    data = json.loads(template.path.read_text())
    data["proof"] = list(proof)
    data["hex_proof"] = "0x" + proof.hex()
    data["instances"] = [[(v % 2**256).to_bytes(32, "little").hex() for v in instances]]
    out.write_text(json.dumps(data))
    try:
        return ezkl_api.verify(out, bundle.settings, bundle.vk, bundle.srs)
    except EzklError:
        return False
