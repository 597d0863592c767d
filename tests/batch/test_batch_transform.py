"""The transformation from EZKL's generated verifier to the batch verifier: what it finds,
what the build records, and that an unknown verifier shape fails loudly, never silently."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from prover.chain import ChainClient
from prover.exceptions import UnknownVerifierShape
from prover.zk.batch import batch_contract_name, generate_batch_verifier
from prover.zk.circuit import Bundle, CircuitSpec, build_bundle
from prover.zk.fields import BN254_R
from prover.zk.hashing import sha256_file
from prover.zk.proof import Proof, gen_witness, prove, write_input

from .support import PAIRING_FAILED, batch_verdict, single_verdict

TINY_ROWS = [[0.1, 0.2, -0.3, 0.4], [0.5, -0.1, 0.0, 0.2], [-0.4, 0.3, 0.3, -0.2]]


@pytest.fixture(scope="session")
def batch_tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A tiny linear model (4 features), two columns: proof points in a loop of the MSM."""
    from onnx import TensorProto, helper, numpy_helper, save

    d = tmp_path_factory.mktemp("batch-tiny")
    weights = np.array([[0.5], [-0.25], [0.75], [0.1]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.array([0.2], dtype=np.float32), "b"),
        ],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), d / "tiny.onnx")
    spec = CircuitSpec(name="batch_tiny", logrows=8, num_inner_cols=2)
    return build_bundle(
        d / "tiny.onnx", spec, TINY_ROWS, out_root=d / "bundles", export_verifier_to=None
    )


def test_the_build_produces_and_records_the_batch_verifier(diagnostic_bundle: Bundle) -> None:
    entry = diagnostic_bundle.manifest["batch_verifier"]
    assert entry["contract"] == "BreastCancerLrBatchVerifier"
    assert {"BatchVerifier.sol", "BatchVerifier.json"} <= set(diagnostic_bundle.manifest["files"])
    assert entry["inputs_contract"] == "BreastCancerLrBatchVerifierInputs"
    artifact = diagnostic_bundle.batch_verifier_artifact
    deployed = bytes.fromhex(artifact["deployedBytecode"][2:])
    assert entry["deployed_bytes"] == len(deployed) <= 24_576
    assert entry["inputs_deployed_bytes"] <= 24_576
    # its creation code carries the inputs contract it deploys
    assert len(bytes.fromhex(artifact["bytecode"][2:])) > entry["inputs_deployed_bytes"]
    source = diagnostic_bundle.batch_verifier_source.read_text()
    single = diagnostic_bundle.verifier_source
    assert source.startswith("// SPDX-License-Identifier: MIT\n// GENERATED FILE - DO NOT EDIT.")
    assert f"from BreastCancerLrVerifier (sha256 {sha256_file(single)})" in source
    assert f"// vk sha256: {diagnostic_bundle.manifest['sha256']['vk']}" in source
    # A program, not a hand edit: the same input gives the same output.
    assert generate_batch_verifier(single.read_text()).source == source


def test_what_the_transformation_finds(diagnostic_bundle: Bundle) -> None:
    single = diagnostic_bundle.verifier_source.read_text()
    batch = generate_batch_verifier(single)
    comms = re.findall(
        r"mstore\(0x[0-9a-f]+, (0x[0-9a-f]{64})\) // (?:fixed|permutation)_comms\[\d+\]\.x", single
    )
    non_zero = [c for c in comms if int(c, 16) != 0]
    # every non-infinity fixed/permutation commitment, plus the generator
    assert len(batch.shared) == len(non_zero) + 1 == batch.outputs - 4
    assert batch.shared[-1].name == "g1" and batch.shared[-1].zeta_power is None
    powers = [p.zeta_power for p in batch.shared[:-1]]
    assert len(set(powers)) == len(powers) and all(p is not None and p > 0 for p in powers)
    # The per-proof part no longer pairs (the helper stays defined, unused) and checks encoding.
    assert single.count("ec_pairing(") == 2 and batch.source.count("ec_pairing(") == 1
    assert "success := and(success, eq(proof.offset, 0x64))" in batch.source
    # nothing reads the vk's commitments in the per-proof part any more: they are not loaded
    assert re.search(r"// (fixed|permutation)_comms", single)
    per_proof = batch.source.split(f"contract {batch.contract_name} {{")[0]
    assert f"contract {batch.inputs_name} {{" in per_proof
    assert not re.search(r"mstore\(0x[0-9a-f]+, 0x[0-9a-f]{64}\) // fixed_comms", per_proof)
    assert "staticcall(gas(), 0x08" in batch.source.split("function verifyBatch")[1]
    assert batch_contract_name("FooVerifier") == "FooBatchVerifier"
    assert batch_contract_name("Foo") == "FooBatch"


Rewrite = Callable[[str], str]


def _drop(anchor: str) -> Rewrite:
    return lambda s: s.replace(anchor, "", 1)


def _twice(pattern: str) -> Rewrite:
    def rewrite(s: str) -> str:
        m = re.search(pattern, s)
        assert m is not None
        return s[: m.end()] + m[0] + s[m.end() :]

    return rewrite


UNKNOWN_SHAPES: list[tuple[str, Rewrite, str]] = [
    ("no contract", lambda s: s.replace("contract ", "library ", 1), "contract <Name> {"),
    ("renamed entry", lambda s: s.replace("verifyProof(", "verify(", 1), "function verifyProof("),
    (
        "two length checks",
        _twice(r"[ \t]*success := and\(success, eq\(0x[0-9a-f]+, proof\.length\)\)\n"),
        "proof length check",
    ),
    ("no modulus comment", _drop("// Modulus\n"), "// Modulus"),
    ("no nu", _drop("let nu := mload(NU_MPTR)\n"), "let nu := mload(NU_MPTR)"),
    (
        "accumulator from memory",
        lambda s: re.sub(
            r"(let nu := mload\(NU_MPTR\)\n\s*)mstore\(0x00, calldataload",
            r"\1mstore(0x00, mload",
            s,
            count=1,
        ),
        "MSM accumulator initialised from the proof",
    ),
    (
        "unknown MSM line",
        lambda s: s.replace(
            "success := ec_add_acc(success, mload(QUOTIENT_X_MPTR), mload(QUOTIENT_Y_MPTR))",
            "success := ec_add_acc(success, mload(QUOTIENT_X_MPTR), mload(QUOTIENT_Y_MPTR))\n"
            "                    success := ec_double_acc(success)",
            1,
        ),
        "MSM line success := ec_double_acc(success)",
    ),
    (
        "no G1 term",
        _drop("success := ec_mul_tmp(success, sub(R, mload(R_EVAL_MPTR)))\n"),
        "G1 * -r_eval term",
    ),
    ("no pairing", _drop("// Perform pairing\n"), "// Perform pairing"),
    (
        "no g2 in the vk",
        lambda s: s.replace("// neg_s_g2_y_2", "// something", 1),
        "vk word neg_s_g2_y_2",
    ),
    (
        "no commitments",
        lambda s: re.sub(r"// (fixed|permutation)_comms", r"// \1_polys", s),
        "fixed_comms/permutation_comms in the vk",
    ),
]


@pytest.mark.parametrize(
    ("rewrite", "anchor"),
    [(r, a) for _, r, a in UNKNOWN_SHAPES],
    ids=[i for i, _, _ in UNKNOWN_SHAPES],
)
def test_an_unknown_verifier_shape_fails_loudly(
    diagnostic_bundle: Bundle, rewrite: Rewrite, anchor: str
) -> None:
    single = diagnostic_bundle.verifier_source.read_text()
    changed = rewrite(single)
    assert changed != single
    with pytest.raises(UnknownVerifierShape, match=re.escape(anchor)) as info:
        generate_batch_verifier(changed)
    assert "unknown verifier shape" in str(info.value) and "\n" not in str(info.value)


def test_a_tiny_model_built_here_batches_on_chain(
    batch_tiny_bundle: Bundle, chain_client: ChainClient, tmp_path: Path
) -> None:
    """Another verifier shape (two columns: a loop over proof points stays in the MSM)."""
    assert "@@" not in batch_tiny_bundle.batch_verifier_source.read_text()
    assert (
        "for"
        in batch_tiny_bundle.batch_verifier_source.read_text()
        .split("let nu := mload(NU_MPTR)")[1]
        .split("mstore(0x80,")[0]
    )
    proofs: list[Proof] = []
    for i, row in enumerate(TINY_ROWS):
        witness = gen_witness(
            batch_tiny_bundle, write_input(tmp_path / f"in{i}.json", [row]), tmp_path / f"w{i}.json"
        )
        proofs.append(prove(batch_tiny_bundle, witness, tmp_path / f"p{i}.json"))
    w3 = chain_client.w3
    single = chain_client.deploy(
        bytes.fromhex(batch_tiny_bundle.verifier_artifact["bytecode"][2:])
    ).address
    batch = chain_client.deploy(
        bytes.fromhex(batch_tiny_bundle.batch_verifier_artifact["bytecode"][2:])
    ).address
    assert all(single_verdict(w3, single, p.proof, p.instances) for p in proofs)
    assert batch_verdict(
        w3, batch, [p.proof for p in proofs], [p.instances for p in proofs]
    ).accepted
    instances = [list(p.instances) for p in proofs]
    instances[1][-1] = (instances[1][-1] + 1) % BN254_R
    bad = batch_verdict(w3, batch, [p.proof for p in proofs], instances)
    assert not bad.accepted and bad.revert == PAIRING_FAILED
    assert not single_verdict(w3, single, proofs[1].proof, instances[1])


def test_the_evaluation_circuit_batches_too(
    eval_bundle: Bundle, reference_weights, chain_client: ChainClient, tmp_path: Path
) -> None:
    """A larger verifier shape (9 instances, 35 shared points; its single verifier is 24.4 kB):
    the per-proof part is a contract of its own, so both fit under EIP-170."""
    from prover.models.bounty_eval import prove_evaluation

    entry = eval_bundle.manifest["batch_verifier"]
    assert entry["inputs_deployed_bytes"] <= 24_576 and entry["deployed_bytes"] <= 24_576
    proofs = [
        prove_evaluation(eval_bundle, reference_weights, context, tmp_path).proof
        for context in (1, 2**100 + 7)
    ]
    w3 = chain_client.w3
    single = chain_client.deploy(
        bytes.fromhex(eval_bundle.verifier_artifact["bytecode"][2:])
    ).address
    batch = chain_client.deploy(
        bytes.fromhex(eval_bundle.batch_verifier_artifact["bytecode"][2:])
    ).address
    assert all(single_verdict(w3, single, p.proof, p.instances) for p in proofs)
    assert batch_verdict(
        w3, batch, [p.proof for p in proofs], [p.instances for p in proofs]
    ).accepted
    swapped = batch_verdict(
        w3, batch, [p.proof for p in proofs], [proofs[1].instances, proofs[0].instances]
    )
    assert not swapped.accepted and swapped.revert == PAIRING_FAILED
