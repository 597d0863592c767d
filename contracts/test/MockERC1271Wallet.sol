// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MockERC1271Wallet
/// @notice Contract wallet (e.g. a hospital's multisig) whose signatures are valid iff signed by its owner key.
contract MockERC1271Wallet is IERC1271 {
    address private immutable _owner;

    constructor(address owner_) {
        _owner = owner_;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes memory signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && recovered == _owner ? IERC1271.isValidSignature.selector : bytes4(0);
    }
}

/// @title MockGasBurningWallet
/// @notice Malicious contract "hospital": `isValidSignature` burns all the gas it is given (an attacker's wallet
/// trying to sink a whole `submitClaims` batch).
contract MockGasBurningWallet is IERC1271 {
    /// @inheritdoc IERC1271
    function isValidSignature(bytes32, bytes memory) external view returns (bytes4 magic) {
        assembly ("memory-safe") {
            for { let i := 0x1000 } gt(gas(), 5000) { i := add(i, 1) } { pop(sload(i)) }
        }
        return magic;
    }
}
