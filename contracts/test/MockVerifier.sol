// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IHalo2Verifier} from "../interfaces/IHalo2Verifier.sol";

/// @title MockVerifier
/// @notice Test stand-in for the EZKL Halo2 verifier. In `Pattern` mode a proof is valid iff it equals
/// `proofFor(instances)` = `keccak256("zkcare.mock-proof") ++ keccak256(abi.encode(instances))`, so a proof is bound
/// to its instances like a real one. In `Committed` mode (a `polycommit` model, whose proof starts with its input's
/// KZG commitment) a proof is valid iff it equals `committedProofFor(x, y, instances)` = `x ++ y ++
/// keccak256(abi.encode(x, y, instances))`: bound to its first G1 point and its instances. Other modes force an answer. Failures `revert(0, 0)` like the generated verifier.
contract MockVerifier is IHalo2Verifier {
    /// @notice How the mock answers.
    enum Mode {
        Pattern,
        AcceptAll,
        RejectAll,
        ReturnFalse,
        ReturnShort, // one byte of return data: not an ABI bool
        ReturnNonBool, // a 32-byte word equal to 2: not an ABI bool
        BurnGas, // spends all the gas it is given (a claim too heavy for its batch stipend)
        Committed
    }

    /// @notice Tag prefixed to every valid mock proof.
    bytes32 public constant PROOF_TAG = keccak256("zkcare.mock-proof");
    uint256 private constant _R = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    Mode private _mode;

    /// @notice Emitted after the test changed the mock's mode.
    event MockVerifierModeSet(Mode mode);

    /// @notice Sets how the mock answers.
    function setMode(Mode newMode) external {
        _mode = newMode;
        emit MockVerifierModeSet(newMode);
    }

    /// @notice The current mode.
    function mode() external view returns (Mode) {
        return _mode;
    }

    /// @notice The proof the mock accepts (in `Pattern` mode) for `instances`.
    function proofFor(uint256[] calldata instances) external pure returns (bytes memory) {
        return abi.encodePacked(PROOF_TAG, keccak256(abi.encode(instances)));
    }

    /// @notice The proof the mock accepts (in `Committed` mode) for the first G1 point (x, y) and `instances`.
    function committedProofFor(uint256 x, uint256 y, uint256[] calldata instances)
        external
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(x, y, keccak256(abi.encode(x, y, instances)));
    }

    /// @inheritdoc IHalo2Verifier
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        Mode mode_ = _mode;
        if (mode_ == Mode.BurnGas) {
            // cold SLOADs: 2100 gas a step, so a traced node does not crawl through millions of steps
            assembly ("memory-safe") {
                for { let i := 0x1000 } gt(gas(), 5000) { i := add(i, 1) } { pop(sload(i)) }
            }
            return proof.length == 0;
        }
        if (mode_ == Mode.ReturnFalse) return false;
        if (mode_ == Mode.ReturnShort) {
            assembly ("memory-safe") {
                mstore(0, shl(248, 1))
                return(0, 1)
            }
        }
        if (mode_ == Mode.ReturnNonBool) {
            assembly ("memory-safe") {
                mstore(0, 2)
                return(0, 32)
            }
        }
        bool ok = mode_ == Mode.AcceptAll;
        if (mode_ == Mode.Pattern) {
            ok = proof.length == 64 && bytes32(proof[0:32]) == PROOF_TAG
                && bytes32(proof[32:64]) == keccak256(abi.encode(instances));
        } else if (mode_ == Mode.Committed) {
            ok = proof.length == 96
                && bytes32(proof[64:96])
                    == keccak256(abi.encode(uint256(bytes32(proof[0:32])), uint256(bytes32(proof[32:64])), instances));
        }
        for (uint256 i; i < instances.length; ++i) {
            if (instances[i] >= _R) ok = false;
        }
        if (!ok) {
            assembly ("memory-safe") {
                revert(0, 0)
            }
        }
        return true;
    }
}
