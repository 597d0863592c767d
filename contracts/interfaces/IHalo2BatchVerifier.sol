// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IHalo2BatchVerifier
/// @notice Interface of the batch verifiers zkcare generates from EZKL's Halo2 (KZG, BN254) verifiers
/// (`prover.zk.batch`): N proofs of one model version, checked with one pairing.
/// @dev The generated contracts declare these errors themselves (they are self-contained sources); the selectors are
/// the same, so callers such as `ModelRegistry` decode them through this interface.
interface IHalo2BatchVerifier {
    /// @dev The batch is empty.
    error Halo2BatchVerifierEmptyBatch();
    /// @dev `proofs` and `instances` differ in length.
    error Halo2BatchVerifierLengthMismatch(uint256 proofs, uint256 instances);
    /// @dev Proof `index` failed a check of its own (length, encoding, field element, curve point, transcript).
    error Halo2BatchVerifierProofRejected(uint256 index);
    /// @dev The one pairing check failed: at least one proof of the batch is invalid (which one is not known).
    error Halo2BatchVerifierPairingFailed();

    /// @notice Verifies every `proofs[i]` against `instances[i]` with one pairing check; anyone may call it.
    /// @return True when every proof is valid; reverts with one of the errors above otherwise, never returns false.
    function verifyBatch(bytes[] calldata proofs, uint256[][] calldata instances) external view returns (bool);
}
