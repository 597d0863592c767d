// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ModelStatus, ModelVersion} from "../interfaces/IModelRegistry.sol";

/// @title RegistryCallSpy
/// @notice Test-only stand-in for `ModelRegistry`: every version is active with one output, and `verifyBatch` reverts
/// with the exact calldata it received, so a test can compare ClaimSettlement's hand-written encoding of the call
/// with the ABI's.
contract RegistryCallSpy {
    /// @dev `verifyBatch` was called with `data` (its whole calldata, selector included).
    error RegistryCallSpyCalled(bytes data);

    /// @notice Always active.
    function isActive(bytes32, uint32) external pure returns (bool) {
        return true;
    }

    /// @notice A version with one output (what `createProduct` reads).
    function getModelVersion(bytes32, uint32) external pure returns (ModelVersion memory version) {
        version.status = ModelStatus.Active;
        version.instanceCount = 2;
        version.outputIndex = 1;
        version.outputCount = 1;
    }

    /// @notice Reverts with `RegistryCallSpyCalled(msg.data)`.
    function verifyBatch(bytes32, uint32, bytes[] calldata, uint256[][] calldata)
        external
        pure
        returns (uint256[] memory, int256[][] memory)
    {
        revert RegistryCallSpyCalled(msg.data);
    }
}
