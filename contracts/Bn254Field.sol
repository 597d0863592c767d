// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Bn254Field
/// @notice Encoding of signed fixed-point numbers as BN254 scalar field elements, as EZKL does for public outputs;
/// also the base field modulus that bounds G1 point coordinates.
/// @dev A signed value v is encoded as v when v >= 0 and as r - |v| when v < 0. Decoding treats the upper half of the
/// field, x > (r - 1) / 2, as negative: value = -(r - x). Since r < 2^254, every decoded value fits in an int256.
library Bn254Field {
    /// @dev The BN254 scalar field modulus r.
    uint256 internal constant MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// @dev (r - 1) / 2: the largest field element that decodes to a non-negative value.
    uint256 internal constant HALF_MODULUS = (MODULUS - 1) / 2;
    /// @dev The BN254 base field modulus q (q > r): G1 point coordinates are canonical iff `< q`.
    uint256 internal constant BASE_MODULUS =
        21888242871839275222246405745257275088696311157297823662689037894645226208583;

    /// @dev `x` is not a canonical field element.
    error Bn254FieldNotInField(uint256 x);
    /// @dev `v` has |v| > (r - 1) / 2 and cannot be encoded.
    error Bn254FieldOutOfRange(int256 v);

    /// @notice Decodes a canonical field element to the signed integer it encodes.
    function toSigned(uint256 x) internal pure returns (int256) {
        if (x >= MODULUS) revert Bn254FieldNotInField(x);
        // Both branches are < 2^253 in absolute value, so the casts are exact.
        return x > HALF_MODULUS ? -int256(MODULUS - x) : int256(x);
    }

    /// @notice Encodes a signed integer as a field element (inverse of {toSigned}).
    function fromSigned(int256 v) internal pure returns (uint256) {
        if (v >= 0) {
            if (uint256(v) > HALF_MODULUS) revert Bn254FieldOutOfRange(v);
            return uint256(v);
        }
        // -(v + 1) + 1 avoids negating type(int256).min.
        uint256 magnitude = uint256(-(v + 1)) + 1;
        if (magnitude > HALF_MODULUS) revert Bn254FieldOutOfRange(v);
        return MODULUS - magnitude;
    }
}
