// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FeeOnTransferToken
/// @notice ERC-20 that burns `feeBps` of every transfer (not of mints): the recipient receives less than `amount`.
contract FeeOnTransferToken is ERC20 {
    uint256 private immutable _feeBps;

    constructor(uint256 feeBps_) ERC20("Fee On Transfer", "FOT") {
        _feeBps = feeBps_;
    }

    /// @notice Mints `amount` to `to` (test only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The fee in basis points.
    function feeBps() external view returns (uint256) {
        return _feeBps;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * _feeBps) / 10_000;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
