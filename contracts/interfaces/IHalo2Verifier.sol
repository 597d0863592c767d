// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IHalo2Verifier
/// @notice Interface of the EZKL-generated Halo2 (KZG, BN254) Solidity verifier.
/// @dev The generated verifier returns `true` for a valid proof and `revert(0, 0)` (empty revert data) on ANY failure,
/// including public instances that are not reduced modulo the BN254 scalar field. It is not declared `view`.
interface IHalo2Verifier {
    /// @notice Verifies a Halo2 proof against its public instances.
    /// @param proof The serialized proof bytes, as produced by `ezkl prove` (`proof.hex_proof`).
    /// @param instances The public instances (field elements), in the circuit's instance order.
    /// @return True when the proof is valid (the generated verifier reverts otherwise).
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}
