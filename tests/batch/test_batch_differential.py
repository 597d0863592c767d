"""The batch verifier, the single verifier and ``ezkl.verify`` agree, on real proofs and on
many mutations of them (every byte region, points off the curve or at infinity, values at or
above the field moduli, swapped slots); one bad proof among N fails the whole batch."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_abi import encode

from prover.chain import ChainClient
from prover.zk.fields import BN254_R
from prover.zk.proof import Proof

from .conftest import BatchDeployment
from .support import (
    BATCH_INPUTS,
    BN254_Q,
    EMPTY_BATCH,
    INPUTS_CONTRACT,
    LENGTH_MISMATCH,
    PAIRING_FAILED,
    PROOF_REJECTED,
    Layout,
    batch_verdict,
    eth_call,
    native_verdict,
    proof_layout,
    put,
    single_verdict,
    word,
)

Mutation = Callable[[bytes, list[int], random.Random], tuple[bytes, list[int]]]


@pytest.fixture(scope="module")
def batch_layout(batch_deployment: BatchDeployment) -> Layout:
    return proof_layout(batch_deployment.bundle.verifier_source.read_text())


def test_valid_proofs_pass_in_every_batch_size_and_order(
    chain_client: ChainClient, batch_deployment: BatchDeployment, batch_proofs: list[Proof]
) -> None:
    w3, dep = chain_client.w3, batch_deployment
    for proof in batch_proofs:
        assert single_verdict(w3, dep.single, proof.proof, proof.instances)
    rng = random.Random(13)
    for n in (1, 2, 3, 6):
        chosen = rng.sample(batch_proofs, n)
        verdict = batch_verdict(
            w3, dep.batch, [p.proof for p in chosen], [p.instances for p in chosen]
        )
        assert verdict.accepted, (n, verdict.revert.hex())
    # The same valid proof twice is still a batch of valid proofs (settlement deduplicates claims).
    twice = [batch_proofs[0], batch_proofs[0]]
    assert batch_verdict(
        w3, dep.batch, [p.proof for p in twice], [p.instances for p in twice]
    ).accepted


def test_empty_and_ragged_batches_are_refused(
    chain_client: ChainClient, batch_deployment: BatchDeployment, batch_proofs: list[Proof]
) -> None:
    w3, dep = chain_client.w3, batch_deployment
    empty = batch_verdict(w3, dep.batch, [], [])
    assert not empty.accepted and empty.revert == EMPTY_BATCH
    p = batch_proofs[0]
    ragged = batch_verdict(w3, dep.batch, [p.proof, p.proof], [p.instances])
    assert not ragged.accepted and ragged.revert == LENGTH_MISMATCH + encode(
        ["uint256", "uint256"], [2, 1]
    )


def _flip(region: str) -> Mutation:
    def mutate(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
        layout = proof_layout_cache[0]
        span: range = getattr(layout, region)
        at = rng.choice(span)
        out = bytearray(proof)
        out[at] ^= 1 << rng.randrange(8)
        return bytes(out), inst

    mutate.__name__ = f"flip_{region}"
    return mutate


def _point_at(rng: random.Random, layout: Layout) -> int:
    sections = [layout.commitments, layout.w, layout.w_prime]
    span = rng.choice(sections)
    return span.start + 0x40 * rng.randrange(len(span) // 0x40)


def infinity(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    at = _point_at(rng, proof_layout_cache[0])
    return put(put(proof, at, 0), at + 32, 0), inst


def off_curve(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    at = _point_at(rng, proof_layout_cache[0])
    return put(proof, at + 32, (word(proof, at + 32) + 1) % BN254_Q), inst


def coordinate_plus_q(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    """The same point with a coordinate written as x + q (>= the base field modulus)."""
    at = _point_at(rng, proof_layout_cache[0]) + 32 * rng.randrange(2)
    return put(proof, at, word(proof, at) + BN254_Q), inst


def negated_point(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    at = _point_at(rng, proof_layout_cache[0])
    return put(proof, at + 32, (BN254_Q - word(proof, at + 32)) % BN254_Q), inst


def eval_plus_r(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    span = proof_layout_cache[0].evaluations
    at = span.start + 32 * rng.randrange(len(span) // 32)
    return put(proof, at, word(proof, at) + BN254_R), inst


def eval_plus_one(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    span = proof_layout_cache[0].evaluations
    at = span.start + 32 * rng.randrange(len(span) // 32)
    return put(proof, at, (word(proof, at) + 1) % BN254_R), inst


def instance_plus_one(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    k = rng.randrange(len(inst))
    return proof, [(v + 1) % BN254_R if i == k else v for i, v in enumerate(inst)]


def instance_plus_r(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    k = rng.randrange(len(inst))
    return proof, [v + BN254_R if i == k else v for i, v in enumerate(inst)]


def truncated(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    return proof[: -rng.choice([1, 32, 64])], inst


def extended(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    return proof + b"\x00" * rng.choice([1, 32]), inst


def extra_instance(proof: bytes, inst: list[int], rng: random.Random) -> tuple[bytes, list[int]]:
    return proof, [*inst, 0]


proof_layout_cache: list[Layout] = []
MUTATIONS: list[Mutation] = [
    _flip("commitments"),
    _flip("evaluations"),
    _flip("w"),
    _flip("w_prime"),
    infinity,
    off_curve,
    coordinate_plus_q,
    negated_point,
    eval_plus_r,
    eval_plus_one,
    instance_plus_one,
    instance_plus_r,
    truncated,
    extended,
    extra_instance,
]


def test_mutations_agree_across_batch_single_and_ezkl(
    chain_client: ChainClient,
    batch_deployment: BatchDeployment,
    batch_proofs: list[Proof],
    batch_layout: Layout,
    tmp_path: Path,
) -> None:
    """Every mutation, 4 random draws each (60 in all), in a random slot of a batch of 3."""
    proof_layout_cache[:] = [batch_layout]
    w3, dep = chain_client.w3, batch_deployment
    rng = random.Random(2026)
    seen_index_errors = seen_pairing_errors = 0
    for mutate in MUTATIONS:
        for draw in range(4):
            chosen = rng.sample(batch_proofs, 3)
            slot = rng.randrange(3)
            proof, inst = mutate(chosen[slot].proof, list(chosen[slot].instances), rng)
            label = f"{mutate.__name__}#{draw} slot {slot}"
            single = single_verdict(w3, dep.single, proof, inst)
            native = native_verdict(dep.bundle, chosen[slot], proof, inst, tmp_path / "m.json")
            alone = batch_verdict(w3, dep.batch, [proof], [inst])
            proofs = [p.proof for p in chosen]
            instances: list[list[int]] = [list(p.instances) for p in chosen]
            proofs[slot], instances[slot] = proof, inst
            together = batch_verdict(w3, dep.batch, proofs, instances)
            if mutate is extended:
                # Known difference: ezkl.verify ignores bytes after the proof; both on-chain
                # verifiers check the exact length (and must agree with each other).
                assert native, label
                native = single
            assert (single, native, alone.accepted, together.accepted) == (False,) * 4, label
            if together.revert[:4] == PROOF_REJECTED:
                assert together.revert == PROOF_REJECTED + slot.to_bytes(32, "big"), label
                seen_index_errors += 1
            else:
                assert together.revert == PAIRING_FAILED, (label, together.revert.hex())
                seen_pairing_errors += 1
    # Both failure paths were exercised: checks of one proof (named by index) and the pairing.
    assert seen_index_errors and seen_pairing_errors


def test_swapped_slots_fail_the_batch(
    chain_client: ChainClient, batch_deployment: BatchDeployment, batch_proofs: list[Proof]
) -> None:
    """Proof i with instances j (i != j): rejected alone, by the single verifier and in a batch."""
    w3, dep = chain_client.w3, batch_deployment
    a, b, c = batch_proofs[:3]
    assert a.instances != b.instances
    assert not single_verdict(w3, dep.single, a.proof, b.instances)
    swapped = batch_verdict(
        w3, dep.batch, [a.proof, b.proof, c.proof], [b.instances, a.instances, c.instances]
    )
    assert not swapped.accepted and swapped.revert == PAIRING_FAILED
    # the same batch with matching instances passes
    assert batch_verdict(
        w3, dep.batch, [a.proof, b.proof, c.proof], [a.instances, b.instances, c.instances]
    ).accepted


@pytest.mark.parametrize("bad_slot", [0, 4, 9])
def test_one_bad_proof_among_ten_fails_the_whole_batch(
    chain_client: ChainClient,
    batch_deployment: BatchDeployment,
    batch_proofs: list[Proof],
    bad_slot: int,
) -> None:
    w3, dep = chain_client.w3, batch_deployment
    chosen = [batch_proofs[i % len(batch_proofs)] for i in range(10)]
    proofs = [p.proof for p in chosen]
    instances = [list(p.instances) for p in chosen]
    assert batch_verdict(w3, dep.batch, proofs, instances).accepted
    instances[bad_slot][-1] = (instances[bad_slot][-1] + 1) % BN254_R  # another output
    verdict = batch_verdict(w3, dep.batch, proofs, instances)
    assert not verdict.accepted and verdict.revert == PAIRING_FAILED


def test_batch_inputs_refuses_a_non_standard_encoding(
    chain_client: ChainClient, batch_deployment: BatchDeployment, batch_proofs: list[Proof]
) -> None:
    """The generated code reads the proof at fixed calldata offsets; a shifted proof is refused."""
    w3, dep = chain_client.w3, batch_deployment
    p = batch_proofs[0]
    raw = w3.eth.call({"to": dep.batch, "data": INPUTS_CONTRACT})  # type: ignore[typeddict-item]
    inputs = w3.to_checksum_address(raw[-20:])
    standard = BATCH_INPUTS + encode(["bytes", "uint256[]"], [p.proof, list(p.instances)])
    outputs = 4 + int(dep.bundle.manifest["batch_verifier"]["shared_points"])
    assert len(w3.eth.call({"to": inputs, "data": standard})) == 32 * outputs  # type: ignore[typeddict-item]
    # Same arguments, with one spare word between the head and the proof's bytes.
    body = standard[4:]
    proof_offset = int.from_bytes(body[:32], "big") + 32
    instances_offset = int.from_bytes(body[32:64], "big") + 32
    shifted = BATCH_INPUTS + proof_offset.to_bytes(32, "big") + instances_offset.to_bytes(32, "big")
    shifted += b"\x00" * 32 + body[64:]
    verdict = eth_call(w3, inputs, shifted)
    assert not verdict.accepted and verdict.revert == b""
