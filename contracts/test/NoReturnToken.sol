// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title NoReturnToken
/// @notice USDT-like token: `transfer`, `transferFrom` and `approve` return nothing (not ERC-20 compliant), and
/// failures revert. 6 decimals.
contract NoReturnToken {
    /// @notice Token name.
    string public constant name = "No Return USD";
    /// @notice Token symbol.
    string public constant symbol = "NRUSD";
    /// @notice Token decimals.
    uint8 public constant decimals = 6;

    mapping(address account => uint256 balance) private _balances;
    mapping(address owner => mapping(address spender => uint256 amount)) private _allowances;
    uint256 private _totalSupply;

    /// @notice ERC-20 Transfer event.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20 Approval event.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @dev Balance too low.
    error NoReturnTokenInsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @dev Allowance too low.
    error NoReturnTokenInsufficientAllowance(address spender, uint256 allowance, uint256 needed);

    /// @notice Mints `amount` to `to` (test only).
    function mint(address to, uint256 amount) external {
        _totalSupply += amount;
        _balances[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @notice Transfers without returning a value.
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    /// @notice Transfers from `from` without returning a value.
    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = _allowances[from][msg.sender];
        if (allowed < amount) revert NoReturnTokenInsufficientAllowance(msg.sender, allowed, amount);
        if (allowed != type(uint256).max) _allowances[from][msg.sender] = allowed - amount;
        _move(from, to, amount);
    }

    /// @notice Approves without returning a value.
    function approve(address spender, uint256 amount) external {
        _allowances[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
    }

    /// @notice Balance of `account`.
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @notice Allowance of `spender` over `owner`'s tokens.
    function allowance(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender];
    }

    /// @notice Total supply.
    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function _move(address from, address to, uint256 amount) private {
        uint256 balance = _balances[from];
        if (balance < amount) revert NoReturnTokenInsufficientBalance(from, balance, amount);
        _balances[from] = balance - amount;
        _balances[to] += amount;
        emit Transfer(from, to, amount);
    }
}
