"""The part of ClaimSettlement's ABI the relay uses (functions, claim events, every error), and
the one ModelRegistry view it reads (``getBatchVerifier``).

Embedded so that the relay runs without a compiler or ape project. Regenerate with
``python -m prover.relay.abi`` after the contracts change; tests compare these subsets with the
compiled contracts, so drift is caught.
"""

from __future__ import annotations

import sys
from typing import Any

#: Functions the relay calls, events it decodes.
FUNCTIONS = frozenset(
    {
        "submitClaim",
        "submitClaimsBatched",
        "registry",
        "getPolicy",
        "getProduct",
        "claimOfCommitment",
        "attestationDigest",
        "domainSeparator",
        "isHospitalTrusted",
        "paused",
    }
)
EVENTS = frozenset({"ClaimPaid", "ClaimDenied"})
#: ModelRegistry functions the relay calls.
REGISTRY_FUNCTIONS = frozenset({"getBatchVerifier"})


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in sorted(value.items()) if k != "internalType"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def extract(compiled_abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The relay's subset of a compiled ClaimSettlement ABI (``internalType`` dropped)."""
    return [
        _strip(entry)
        for entry in compiled_abi
        if entry["type"] == "error"
        or (entry["type"] == "function" and entry["name"] in FUNCTIONS)
        or (entry["type"] == "event" and entry["name"] in EVENTS)
    ]


def extract_registry(compiled_abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The relay's subset of a compiled ModelRegistry ABI (``internalType`` dropped)."""
    return [
        _strip(entry)
        for entry in compiled_abi
        if entry["type"] == "function" and entry["name"] in REGISTRY_FUNCTIONS
    ]


def _regenerate() -> str:  # pragma: no cover - developer tool
    from ape import project

    compiled = project.ClaimSettlement.contract_type.model_dump(mode="json", by_alias=True)
    registry = project.ModelRegistry.contract_type.model_dump(mode="json", by_alias=True)
    return (
        "CLAIM_SETTLEMENT_ABI: list[dict[str, Any]] = "
        + repr(extract(compiled["abi"]))
        + "\n\nMODEL_REGISTRY_ABI: list[dict[str, Any]] = "
        + repr(extract_registry(registry["abi"]))
    )


CLAIM_SETTLEMENT_ABI: list[dict[str, Any]] = [
    {"inputs": [], "name": "AccessControlBadConfirmation", "type": "error"},
    {
        "inputs": [
            {"name": "account", "type": "address"},
            {"name": "neededRole", "type": "bytes32"},
        ],
        "name": "AccessControlUnauthorizedAccount",
        "type": "error",
    },
    {
        "inputs": [{"name": "expiry", "type": "uint64"}],
        "name": "ClaimSettlementAttestationExpired",
        "type": "error",
    },
    {
        "inputs": [{"name": "attestedAt", "type": "uint64"}, {"name": "expiry", "type": "uint64"}],
        "name": "ClaimSettlementAttestationTooLong",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "policyId", "type": "uint256"},
            {"name": "expiry", "type": "uint64"},
            {"name": "attestedAt", "type": "uint64"},
        ],
        "name": "ClaimSettlementAttestedAfterExpiry",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "index", "type": "uint256"},
            {"name": "gasLeft", "type": "uint256"},
            {"name": "needed", "type": "uint256"},
        ],
        "name": "ClaimSettlementBatchGasTooLow",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "index", "type": "uint256"},
            {"name": "modelId", "type": "bytes32"},
            {"name": "version", "type": "uint32"},
        ],
        "name": "ClaimSettlementBatchMixedModels",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "policyId", "type": "uint256"},
            {"name": "inputCommitment", "type": "uint256"},
            {"name": "claimId", "type": "uint256"},
        ],
        "name": "ClaimSettlementCommitmentAlreadyUsed",
        "type": "error",
    },
    {
        "inputs": [{"name": "attested", "type": "uint256"}, {"name": "proven", "type": "uint256"}],
        "name": "ClaimSettlementCommitmentMismatch",
        "type": "error",
    },
    {
        "inputs": [{"name": "policyId", "type": "uint256"}],
        "name": "ClaimSettlementCoverageExhausted",
        "type": "error",
    },
    {"inputs": [], "name": "ClaimSettlementEmptyBatch", "type": "error"},
    {
        "inputs": [
            {"name": "poolId", "type": "uint256"},
            {"name": "requested", "type": "uint256"},
            {"name": "available", "type": "uint256"},
        ],
        "name": "ClaimSettlementInsufficientFunds",
        "type": "error",
    },
    {
        "inputs": [{"name": "hospital", "type": "address"}],
        "name": "ClaimSettlementInvalidAttestation",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "holder", "type": "address"},
            {"name": "coverage", "type": "uint256"},
            {"name": "expiry", "type": "uint64"},
        ],
        "name": "ClaimSettlementInvalidPolicy",
        "type": "error",
    },
    {
        "inputs": [{"name": "payout", "type": "uint128"}],
        "name": "ClaimSettlementInvalidProduct",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "comparison", "type": "uint8"},
            {"name": "output", "type": "uint16"},
            {"name": "threshold", "type": "int128"},
        ],
        "name": "ClaimSettlementInvalidRule",
        "type": "error",
    },
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "ClaimSettlementModelNotActive",
        "type": "error",
    },
    {
        "inputs": [{"name": "poolId", "type": "uint256"}, {"name": "account", "type": "address"}],
        "name": "ClaimSettlementNotInsurer",
        "type": "error",
    },
    {"inputs": [], "name": "ClaimSettlementOnlySelf", "type": "error"},
    {
        "inputs": [{"name": "policyId", "type": "uint256"}, {"name": "expiry", "type": "uint64"}],
        "name": "ClaimSettlementPolicyExpired",
        "type": "error",
    },
    {
        "inputs": [{"name": "policyId", "type": "uint256"}, {"name": "expiry", "type": "uint64"}],
        "name": "ClaimSettlementPolicyNotExpired",
        "type": "error",
    },
    {
        "inputs": [{"name": "productId", "type": "uint256"}],
        "name": "ClaimSettlementProductRetired",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "policyId", "type": "uint256"},
            {"name": "recordNullifier", "type": "bytes32"},
            {"name": "claimId", "type": "uint256"},
        ],
        "name": "ClaimSettlementRecordAlreadyClaimed",
        "type": "error",
    },
    {
        "inputs": [{"name": "policyId", "type": "uint256"}],
        "name": "ClaimSettlementUnknownPolicy",
        "type": "error",
    },
    {
        "inputs": [{"name": "poolId", "type": "uint256"}],
        "name": "ClaimSettlementUnknownPool",
        "type": "error",
    },
    {
        "inputs": [{"name": "productId", "type": "uint256"}],
        "name": "ClaimSettlementUnknownProduct",
        "type": "error",
    },
    {
        "inputs": [{"name": "poolId", "type": "uint256"}, {"name": "hospital", "type": "address"}],
        "name": "ClaimSettlementUntrustedHospital",
        "type": "error",
    },
    {"inputs": [], "name": "ClaimSettlementZeroAddress", "type": "error"},
    {"inputs": [], "name": "EnforcedPause", "type": "error"},
    {"inputs": [], "name": "ExpectedPause", "type": "error"},
    {"inputs": [], "name": "InvalidShortString", "type": "error"},
    {
        "inputs": [
            {"name": "modelId", "type": "bytes32"},
            {"name": "version", "type": "uint32"},
            {"name": "index", "type": "uint256"},
        ],
        "name": "ModelRegistryBatchRejected",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "modelId", "type": "bytes32"},
            {"name": "version", "type": "uint32"},
            {"name": "batchVerifier", "type": "address"},
        ],
        "name": "ModelRegistryBatchVerifierAlreadyRegistered",
        "type": "error",
    },
    {
        "inputs": [{"name": "proofIndex", "type": "uint256"}],
        "name": "ModelRegistryInputCommitmentNotCanonical",
        "type": "error",
    },
    {
        "inputs": [{"name": "expected", "type": "uint256"}, {"name": "actual", "type": "uint256"}],
        "name": "ModelRegistryInstanceCountMismatch",
        "type": "error",
    },
    {
        "inputs": [{"name": "index", "type": "uint256"}, {"name": "value", "type": "uint256"}],
        "name": "ModelRegistryInstanceNotInField",
        "type": "error",
    },
    {
        "inputs": [{"name": "proofs", "type": "uint256"}, {"name": "instances", "type": "uint256"}],
        "name": "ModelRegistryInvalidBatch",
        "type": "error",
    },
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "ModelRegistryNoBatchVerifier",
        "type": "error",
    },
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "ModelRegistryProofRejected",
        "type": "error",
    },
    {"inputs": [], "name": "ModelRegistryStopped", "type": "error"},
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "ModelRegistryUnknownVersion",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "verifier", "type": "address"},
            {"name": "registered", "type": "bytes32"},
            {"name": "current", "type": "bytes32"},
        ],
        "name": "ModelRegistryVerifierCodeChanged",
        "type": "error",
    },
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "ModelRegistryVersionRevoked",
        "type": "error",
    },
    {
        "inputs": [{"name": "amount", "type": "uint256"}],
        "name": "PayoutsInvalidAmount",
        "type": "error",
    },
    {
        "inputs": [{"name": "account", "type": "address"}, {"name": "asset", "type": "address"}],
        "name": "PayoutsNothingToWithdraw",
        "type": "error",
    },
    {
        "inputs": [
            {"name": "asset", "type": "address"},
            {"name": "to", "type": "address"},
            {"name": "amount", "type": "uint256"},
        ],
        "name": "PayoutsTransferFailed",
        "type": "error",
    },
    {
        "inputs": [{"name": "expected", "type": "uint256"}, {"name": "actual", "type": "uint256"}],
        "name": "PayoutsValueMismatch",
        "type": "error",
    },
    {"inputs": [], "name": "PayoutsZeroRecipient", "type": "error"},
    {"inputs": [], "name": "ReentrancyGuardReentrantCall", "type": "error"},
    {
        "inputs": [{"name": "token", "type": "address"}],
        "name": "SafeERC20FailedOperation",
        "type": "error",
    },
    {"inputs": [{"name": "str", "type": "string"}], "name": "StringTooLong", "type": "error"},
    {
        "anonymous": False,
        "inputs": [
            {"indexed": True, "name": "claimId", "type": "uint256"},
            {"indexed": True, "name": "policyId", "type": "uint256"},
        ],
        "name": "ClaimDenied",
        "type": "event",
    },
    {
        "anonymous": False,
        "inputs": [
            {"indexed": True, "name": "claimId", "type": "uint256"},
            {"indexed": True, "name": "policyId", "type": "uint256"},
            {"indexed": True, "name": "holder", "type": "address"},
            {"indexed": False, "name": "amount", "type": "uint256"},
        ],
        "name": "ClaimPaid",
        "type": "event",
    },
    {
        "inputs": [
            {
                "components": [
                    {"name": "policyId", "type": "uint256"},
                    {"name": "poolId", "type": "uint256"},
                    {"name": "hospital", "type": "address"},
                    {"name": "inputCommitment", "type": "uint256"},
                    {"name": "recordNullifier", "type": "bytes32"},
                    {"name": "attestedAt", "type": "uint64"},
                    {"name": "expiry", "type": "uint64"},
                ],
                "name": "attestation",
                "type": "tuple",
            }
        ],
        "name": "attestationDigest",
        "outputs": [{"name": "", "type": "bytes32"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [
            {"name": "policyId", "type": "uint256"},
            {"name": "inputCommitment", "type": "uint256"},
        ],
        "name": "claimOfCommitment",
        "outputs": [{"name": "", "type": "uint256"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "domainSeparator",
        "outputs": [{"name": "", "type": "bytes32"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "policyId", "type": "uint256"}],
        "name": "getPolicy",
        "outputs": [
            {
                "components": [
                    {"name": "holder", "type": "address"},
                    {"name": "expiry", "type": "uint64"},
                    {"name": "productId", "type": "uint32"},
                    {"name": "reserved", "type": "uint128"},
                    {"name": "paid", "type": "uint128"},
                ],
                "name": "",
                "type": "tuple",
            }
        ],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "productId", "type": "uint256"}],
        "name": "getProduct",
        "outputs": [
            {
                "components": [
                    {"name": "modelId", "type": "bytes32"},
                    {"name": "poolId", "type": "uint64"},
                    {"name": "version", "type": "uint32"},
                    {"name": "retired", "type": "bool"},
                    {"name": "payout", "type": "uint128"},
                    {
                        "components": [
                            {"name": "comparison", "type": "uint8"},
                            {"name": "output", "type": "uint16"},
                            {"name": "threshold", "type": "int128"},
                        ],
                        "name": "rule",
                        "type": "tuple",
                    },
                ],
                "name": "",
                "type": "tuple",
            }
        ],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "poolId", "type": "uint256"}, {"name": "hospital", "type": "address"}],
        "name": "isHospitalTrusted",
        "outputs": [{"name": "", "type": "bool"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "paused",
        "outputs": [{"name": "", "type": "bool"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "registry",
        "outputs": [{"name": "", "type": "address"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [
            {
                "components": [
                    {"name": "policyId", "type": "uint256"},
                    {"name": "hospital", "type": "address"},
                    {"name": "attestedAt", "type": "uint64"},
                    {"name": "attestationExpiry", "type": "uint64"},
                    {"name": "recordNullifier", "type": "bytes32"},
                    {"name": "inputCommitment", "type": "uint256"},
                    {"name": "signature", "type": "bytes"},
                    {"name": "proof", "type": "bytes"},
                    {"name": "instances", "type": "uint256[]"},
                ],
                "name": "claim",
                "type": "tuple",
            }
        ],
        "name": "submitClaim",
        "outputs": [{"name": "claimId", "type": "uint256"}, {"name": "amount", "type": "uint256"}],
        "stateMutability": "nonpayable",
        "type": "function",
    },
    {
        "inputs": [
            {
                "components": [
                    {"name": "policyId", "type": "uint256"},
                    {"name": "hospital", "type": "address"},
                    {"name": "attestedAt", "type": "uint64"},
                    {"name": "attestationExpiry", "type": "uint64"},
                    {"name": "recordNullifier", "type": "bytes32"},
                    {"name": "inputCommitment", "type": "uint256"},
                    {"name": "signature", "type": "bytes"},
                    {"name": "proof", "type": "bytes"},
                    {"name": "instances", "type": "uint256[]"},
                ],
                "name": "claims",
                "type": "tuple[]",
            }
        ],
        "name": "submitClaimsBatched",
        "outputs": [{"name": "claimIds", "type": "uint256[]"}],
        "stateMutability": "nonpayable",
        "type": "function",
    },
]

MODEL_REGISTRY_ABI: list[dict[str, Any]] = [
    {
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "name": "getBatchVerifier",
        "outputs": [
            {
                "components": [
                    {"name": "verifier", "type": "address"},
                    {"name": "codeHash", "type": "bytes32"},
                ],
                "name": "",
                "type": "tuple",
            }
        ],
        "stateMutability": "view",
        "type": "function",
    }
]


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(_regenerate() + "\n")
