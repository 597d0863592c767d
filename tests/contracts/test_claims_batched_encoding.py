"""ClaimSettlement writes `registry.verifyBatch(...)`'s calldata by hand, straight from the claims'
calldata (gas): it must be byte for byte the ABI encoding, for proofs of any length (padding) and
instance vectors of any length. A spy registry reverts with the calldata it received."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import keccak

from .helpers import DIAG_MODEL, ETH, reverts

SELECTOR = keccak(text="verifyBatch(bytes32,uint32,bytes[],uint256[][])")[:4]


@pytest.fixture
def gas_spy_settlement(project, deployer, insurer, hospital):
    """A ClaimSettlement whose registry is a RegistryCallSpy, with a funded pool and a product."""
    spy = deployer.deploy(project.RegistryCallSpy)
    settlement = deployer.deploy(project.ClaimSettlement, spy, deployer)
    pool = settlement.createPool(ETH, sender=insurer).decode_logs(settlement.PoolCreated)[0].poolId
    settlement.fundPool(pool, 10**19, value=10**19, sender=insurer)
    settlement.setHospitalTrust(pool, hospital.address, True, sender=insurer)
    product = (
        settlement.createProduct(pool, DIAG_MODEL, 7, (0, 0, 1), 10**18, sender=insurer)
        .decode_logs(settlement.ProductCreated)[0]
        .productId
    )
    return settlement, spy, product


@pytest.mark.parametrize(
    "shapes",
    [
        [(2336, 2)],
        [(1, 1), (31, 2), (32, 3), (33, 0), (0, 5)],
        [(65, 2), (2336, 2), (100, 1)],
    ],
)
def test_the_verify_batch_call_is_the_abi_encoding(
    gas_spy_settlement, make_claim, insurer, patient, relayer, chain, shapes: list[tuple[int, int]]
) -> None:
    settlement, spy, product = gas_spy_settlement
    claims = []
    for n, (proof_len, instance_count) in enumerate(shapes):
        policy = (
            settlement.issuePolicy(
                product, patient, 10**18, chain.pending_timestamp + 86400, sender=insurer
            )
            .decode_logs(settlement.PolicyIssued)[0]
            .policyId
        )
        proof = bytes((n * 37 + k * 11 + 1) % 256 for k in range(proof_len))
        instances = [2**250 + 1000 * n + k for k in range(instance_count)]
        claims.append(
            make_claim(policy, proof=proof, instances=instances, contract=settlement).as_tuple()
        )
    expected = SELECTOR + encode(
        ["bytes32", "uint32", "bytes[]", "uint256[][]"],
        [DIAG_MODEL, 7, [c[7] for c in claims], [c[8] for c in claims]],
    )
    with reverts(spy.RegistryCallSpyCalled) as info:
        settlement.submitClaimsBatched(claims, sender=relayer)
    assert _spied(info.value) == expected


def _spied(exc: Any) -> bytes:
    inputs = getattr(exc, "inputs", None)
    if inputs and "data" in inputs:
        return bytes(inputs["data"])
    raw = exc.revert_data if hasattr(exc, "revert_data") else exc.args[0]
    raw = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)
    return bytes(decode(["bytes"], raw[4:])[0])
