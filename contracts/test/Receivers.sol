// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Minimal view of the pull ledger shared by ClaimSettlement and ResearchBounty.
interface ICreditLedger {
    /// @notice Withdraws the caller's credit of `asset` to `to`.
    function withdrawCredit(address asset, address to) external returns (uint256);
}

/// @title RevertingReceiver
/// @notice A policy holder / researcher whose `receive` always reverts; it can still withdraw credits elsewhere.
contract RevertingReceiver {
    /// @dev Always thrown on receiving ETH.
    error RevertingReceiverRefused();

    /// @notice Refuses every ETH transfer.
    receive() external payable {
        revert RevertingReceiverRefused();
    }

    /// @notice Withdraws this contract's credit of `asset` at `ledger` to `to`.
    function withdrawTo(ICreditLedger ledger, address asset, address to) external returns (uint256) {
        return ledger.withdrawCredit(asset, to);
    }
}

/// @title ReentrantReceiver
/// @notice On receiving ETH, calls `target` with the configured calldata (e.g. `submitClaim`, `withdrawCredit`,
/// `reclaim`). It records whether the re-entrant call succeeded and the first 4 bytes of its revert data. With
/// `bubble` set it reverts when the re-entrant call fails (making the payout itself fail).
contract ReentrantReceiver {
    address private _target;
    bool private _bubble;
    // Packed and kept non-zero so that recording costs little gas inside a gas-limited push.
    uint64 private _attempts = 1;
    bool private _lastOk;
    bytes4 private _lastSelector = 0xffffffff;
    bytes private _data;

    /// @notice Emitted after the receiver was configured.
    event ReentrantReceiverConfigured(address target, bool bubble);

    /// @notice Configures the re-entrant call.
    function configure(address target, bytes calldata data, bool bubble) external {
        _target = target;
        _data = data;
        _bubble = bubble;
        emit ReentrantReceiverConfigured(target, bubble);
    }

    /// @notice Accepts ETH after attempting the configured re-entrant call.
    receive() external payable {
        address target = _target;
        if (target == address(0)) return;
        (bool ok, bytes memory ret) = target.call(_data);
        bytes4 selector;
        if (ret.length >= 4) selector = bytes4(ret);
        _attempts += 1;
        _lastOk = ok;
        _lastSelector = selector;
        if (!ok && _bubble) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    /// @notice Withdraws this contract's credit of `asset` at `ledger` to `to`.
    function withdrawTo(ICreditLedger ledger, address asset, address to) external returns (uint256) {
        return ledger.withdrawCredit(asset, to);
    }

    /// @notice Number of re-entry attempts, whether the last one succeeded, and its revert selector.
    function lastAttempt() external view returns (uint256 attempts, bool ok, bytes4 selector) {
        return (_attempts - 1, _lastOk, _lastSelector);
    }
}
