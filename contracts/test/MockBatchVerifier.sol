// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IHalo2BatchVerifier} from "../interfaces/IHalo2BatchVerifier.sol";

/// @title MockBatchVerifier
/// @notice Test stand-in for a generated batch verifier: answers as its mode says (setting the mode changes storage,
/// not code, so the registered code hash stays valid).
contract MockBatchVerifier is IHalo2BatchVerifier {
    /// @notice How the mock answers.
    enum Mode {
        AcceptAll,
        RejectProof, // Halo2BatchVerifierProofRejected(badIndex)
        FailPairing, // Halo2BatchVerifierPairingFailed()
        ReturnFalse,
        RevertEmpty
    }

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
        if (mode == Mode.RevertEmpty) {
            assembly {
                revert(0, 0)
            }
        }
        return true;
    }
}
