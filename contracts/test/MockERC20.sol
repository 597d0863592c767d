// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockERC20
/// @notice Freely mintable ERC-20 with configurable decimals (e.g. a 6-decimal stablecoin) and a USDC-like blocklist.
contract MockERC20 is ERC20 {
    uint8 private immutable _decimals;
    mapping(address account => bool blocked) private _blocked;

    /// @notice Emitted after `account` was (un)blocked.
    event MockERC20BlockSet(address indexed account, bool blocked);

    /// @dev `account` is blocked from sending or receiving.
    error MockERC20Blocked(address account);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_) {
        _decimals = decimals_;
    }

    /// @notice Mints `amount` to `to` (test only: anyone may mint).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Blocks or unblocks transfers from/to `account`.
    function setBlocked(address account, bool blocked) external {
        _blocked[account] = blocked;
        emit MockERC20BlockSet(account, blocked);
    }

    /// @notice The token's decimals.
    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (_blocked[from]) revert MockERC20Blocked(from);
        if (_blocked[to]) revert MockERC20Blocked(to);
        super._update(from, to, value);
    }
}
