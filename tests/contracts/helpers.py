"""Shared constants and helpers for the contract tests (no fixtures here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ape
from ape.exceptions import CustomError
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from prover.models.bounty_eval import CONTEXT_LIMBS as CONTEXT_LIMBS  # re-exported for the tests
from prover.models.bounty_eval import context_limbs, submission_context
from prover.zk.fields import BN254_R, from_signed, to_signed

#: BN254 scalar field modulus r, and the prover's signed fixed-point encoding.
FIELD_MODULUS = BN254_R
HALF_MODULUS = (FIELD_MODULUS - 1) // 2
encode_signed = from_signed
decode_signed = to_signed
#: EZKL fixed-point scale of the diagnostic model's output (fractional bits).
OUTPUT_SCALE = 14
ONE = 1 << OUTPUT_SCALE

ETH = "0x0000000000000000000000000000000000000000"
MOCK_PROOF_TAG = keccak(text="zkcare.mock-proof")

DIAG_MODEL = keccak(text="zkcare/breast_cancer_lr")
EVAL_MODEL = keccak(text="zkcare/breast_cancer_lr-eval")
ONNX_SHA = keccak(text="onnx")
VK_SHA = keccak(text="vk")

# ClaimSettlement.Comparison
AT_LEAST, AT_MOST, ARG_MAX_IS = 0, 1, 2
# ModelStatus
UNREGISTERED, ACTIVE, REVOKED = 0, 1, 2
# MockVerifier.Mode (Pattern = 0 and AcceptAll = 1 are not set by any test)
REJECT_ALL, RETURN_FALSE, RETURN_SHORT, RETURN_NON_BOOL, BURN_GAS = 2, 3, 4, 5, 6
# ResearchBounty.BountyStatus (None = 0)
B_OPEN, B_AWARDED, B_RECLAIMED = 1, 2, 3
#: Fixed-point scale of the mock evaluation circuit's context outputs (the real circuit's is its
#: input scale, 10).
CONTEXT_SCALE = 10
#: Evaluation instances, as the real evaluation circuit lays them out (its card's
#: ``instance_layout``): [weightsCommitment, metric, context_0..5].


def mock_proof(instances: list[int]) -> bytes:
    """The proof MockVerifier (Pattern mode) accepts for exactly these instances."""
    return MOCK_PROOF_TAG + keccak(abi_encode(["uint256[]"], [instances]))


#: ``InstanceLayout.inputIndex`` of a version whose input commitment is the proof's first G1
#: point (IModelRegistry.sol's ``PROOF_COMMITMENT``, ``type(uint16).max``).
PROOF_COMMITMENT = 2**16 - 1
#: BN254 base field modulus q: a G1 coordinate is canonical iff < q.
BN254_Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583
#: MockVerifier.Mode.AcceptAll / Committed, MockBatchVerifier.Mode.AcceptAll / Committed
ACCEPT_ALL, COMMITTED, BATCH_ACCEPT_ALL, BATCH_COMMITTED = 1, 7, 0, 6


def committed_proof(x: int, y: int, instances: list[int]) -> bytes:
    """MockVerifier's ``committedProofFor``: first G1 point (x, y), then a tag bound to it and
    to ``instances`` (what the mocks accept in ``Committed`` mode)."""
    tag = keccak(abi_encode(["uint256", "uint256", "uint256[]"], [x, y, instances]))
    return x.to_bytes(32, "big") + y.to_bytes(32, "big") + tag


def point_commitment(proof: bytes) -> int:
    """The input commitment of a ``PROOF_COMMITMENT`` version: keccak256 of ``proof[0:64]``."""
    return int.from_bytes(keccak(proof[:64]), "big")


def context_instances(
    weights: int, metric: int, context: int, context_scale: int = CONTEXT_SCALE
) -> list[int]:
    """Evaluation instances carrying ``context`` as the circuit outputs it (limbs << scale)."""
    limbs = [limb << context_scale for limb in context_limbs(context)]
    return [weights, encode_signed(metric), *limbs]


def eval_instances(
    bounty: Any,
    bounty_id: int,
    researcher: Any,
    weights: int,
    metric: int,
    context_scale: int = CONTEXT_SCALE,
) -> list[int]:
    """Evaluation instances of a proof made for ``(bounty, bounty_id, researcher)``.

    The context is read from the contract (``submissionContext``) and must equal the prover's
    mirror, ``prover.models.bounty_eval.submission_context``, for this chain.
    """
    address = str(getattr(researcher, "address", researcher))
    context = bounty.submissionContext(bounty_id, address)
    mirror = submission_context(ape.chain.chain_id, bounty.address, bounty_id, address)
    assert context == mirror, f"submissionContext {context:#x} != prover mirror {mirror:#x}"
    return context_instances(weights, metric, context, context_scale)


def b32(text: str) -> bytes:
    """A deterministic bytes32 (record nullifiers, salts)."""
    return keccak(text=text)


def _raw_revert_data(exc: Any) -> bytes:
    """The revert data of an undecoded ``ContractLogicError`` (e.g. from an ``eth_call``)."""
    for source in (getattr(exc, "base_err", None), exc):
        data = getattr(source, "data", None)
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
    match = re.search(r"custom error 0x([0-9a-fA-F]{8}):?\s*([0-9a-fA-F]*)", str(exc))
    assert match, f"no revert data in {exc!r}"
    return bytes.fromhex(match.group(1) + match.group(2))


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(actual, str) and actual.startswith("0x") and len(actual) == 42:
        return str(getattr(expected, "address", expected)).lower() == actual.lower()
    if isinstance(actual, (bytes, bytearray)):
        return bytes(actual) == bytes(expected)
    return actual == expected


@contextmanager
def reverts(error: Any, **inputs: Any) -> Iterator[Any]:
    """Strict ``ape.reverts(error, **inputs)``: the revert data MUST be the named custom error.

    ``ape.reverts(SomeError)`` alone accepts any revert it could not decode (ape-foundry does not
    decode custom errors of ``eth_call``s, e.g. view/pure functions). Here such revert data is
    decoded against ``error``'s ABI, and the selector and every given input are checked.
    """
    with ape.reverts(error, **inputs) as info:
        yield info
    exc = info.value
    abi = error.abi
    if isinstance(exc, CustomError):
        assert type(exc).__name__ == abi.name, f"expected {abi.name}, got {type(exc).__name__}"
        actual = dict(exc.inputs)
    else:
        data = _raw_revert_data(exc)
        selector = keccak(text=abi.selector)[:4]
        assert data[:4] == selector, (
            f"expected {abi.name} ({selector.hex()}), got revert data {data.hex()}"
        )
        values = abi_decode([i.canonical_type for i in abi.inputs], data[4:])
        actual = {i.name: v for i, v in zip(abi.inputs, values, strict=True)}
    for name, value in inputs.items():
        assert name in actual, f"{abi.name} has no input {name!r}"
        assert _same(value, actual[name]), (
            f"{abi.name}.{name}: expected {value!r}, got {actual[name]!r}"
        )


def events(receipt: Any, contract: Any, name: str) -> list[Any]:
    """Decoded logs of event ``name`` emitted by ``contract`` in ``receipt``."""
    return list(receipt.decode_logs(getattr(contract, name)))
