// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IHalo2BatchVerifier} from "../interfaces/IHalo2BatchVerifier.sol";

/// @title MockBatchVerifier
/// @notice Test stand-in for a generated batch verifier: answers as its mode says (setting the mode changes storage,
/// not code, so the registered code hash stays valid). In `Pattern` mode proof i is valid iff it is MockVerifier's
/// `proofFor(instances[i])`, in `Committed` mode iff it is MockVerifier's `committedProofFor(x, y, instances[i])`;
/// the first invalid one is named with `Halo2BatchVerifierProofRejected(i)`.
contract MockBatchVerifier is IHalo2BatchVerifier {
    /// @notice How the mock answers.
    enum Mode {
        AcceptAll,
        RejectProof, // Halo2BatchVerifierProofRejected(badIndex)
        FailPairing, // Halo2BatchVerifierPairingFailed()
        ReturnFalse,
        RevertEmpty,
        Pattern,
        Committed
    }

    /// @notice Tag prefixed to every valid mock proof (as in MockVerifier).
    bytes32 public constant PROOF_TAG = keccak256("zkcare.mock-proof");

    Mode private _mode;
    uint256 private _badIndex;

    /// @notice Emitted after the test changed the mock's mode.
    event MockBatchVerifierModeSet(Mode mode, uint256 badIndex);

    /// @notice Sets how the mock answers (anyone: test-only contract).
    function setMode(Mode newMode, uint256 badIndex) external {
        _mode = newMode;
        _badIndex = badIndex;
        emit MockBatchVerifierModeSet(newMode, badIndex);
    }

    /// @inheritdoc IHalo2BatchVerifier
    function verifyBatch(bytes[] calldata proofs, uint256[][] calldata instances) external view returns (bool) {
        if (proofs.length == 0) revert Halo2BatchVerifierEmptyBatch();
        if (proofs.length != instances.length) revert Halo2BatchVerifierLengthMismatch(proofs.length, instances.length);
        Mode mode = _mode;
        if (mode == Mode.RejectProof) revert Halo2BatchVerifierProofRejected(_badIndex);
        if (mode == Mode.FailPairing) revert Halo2BatchVerifierPairingFailed();
        if (mode == Mode.ReturnFalse) return false;
        if (mode == Mode.Pattern) {
            for (uint256 i; i < proofs.length; ++i) {
                bytes calldata proof = proofs[i];
                bool ok = proof.length == 64 && bytes32(proof[0:32]) == PROOF_TAG
                    && bytes32(proof[32:64]) == keccak256(abi.encode(instances[i]));
                if (!ok) revert Halo2BatchVerifierProofRejected(i);
            }
        }
        if (mode == Mode.Committed) {
            for (uint256 i; i < proofs.length; ++i) {
                bytes calldata proof = proofs[i];
                bool ok = proof.length == 96
                    && bytes32(proof[64:96])
                        == keccak256(
                            abi.encode(uint256(bytes32(proof[0:32])), uint256(bytes32(proof[32:64])), instances[i])
                        );
                if (!ok) revert Halo2BatchVerifierProofRejected(i);
            }
        }
        if (mode == Mode.RevertEmpty) {
            assembly {
                revert(0, 0)
            }
        }
        return true;
    }
}
