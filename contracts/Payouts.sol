// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title Payouts
/// @notice Asset movement shared by ClaimSettlement and ResearchBounty: ETH (`address(0)`) or any ERC-20 in, and
/// payouts that are pushed when possible and otherwise credited to a pull ledger, so a recipient that cannot (or will
/// not) receive never blocks anyone else.
/// @dev Incoming ERC-20 amounts are measured as the balance delta (fee-on-transfer tokens are credited with what
/// actually arrived). Rebasing tokens are not supported. Reentrancy: `withdrawCredit` and every payout path of the
/// inheriting contracts are `nonReentrant` (transient-storage guard).
abstract contract Payouts is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The asset id of native ETH.
    address public constant NATIVE_ASSET = address(0);
    /// @notice Gas forwarded when pushing ETH to a recipient; if the push fails the amount is credited instead.
    uint256 public constant PUSH_GAS_LIMIT = 50_000;

    mapping(address asset => mapping(address account => uint256 amount)) private _credits;

    /// @notice Emitted after a payout that could not be pushed was credited to `account`'s withdrawable balance.
    event PayoutCredited(address indexed account, address indexed asset, uint256 amount);
    /// @notice Emitted after `account` withdrew its credited balance to `to`.
    event CreditWithdrawn(address indexed account, address indexed asset, address indexed to, uint256 amount);

    /// @dev `account` has no credited balance of `asset`.
    error PayoutsNothingToWithdraw(address account, address asset);
    /// @dev Sending `amount` of `asset` to `to` failed.
    error PayoutsTransferFailed(address asset, address to, uint256 amount);
    /// @dev `msg.value` does not match the amount (ETH) or is non-zero (ERC-20).
    error PayoutsValueMismatch(uint256 expected, uint256 actual);
    /// @dev An amount (or the amount actually received) is zero, or does not fit the accounting type.
    error PayoutsInvalidAmount(uint256 amount);
    /// @dev The zero address was given as recipient.
    error PayoutsZeroRecipient();

    /// @notice Withdraws the caller's whole credited balance of `asset` to `to` (any address the caller chooses).
    /// @return amount The amount sent.
    function withdrawCredit(address asset, address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert PayoutsZeroRecipient();
        address account = msg.sender;
        amount = _credits[asset][account];
        if (amount == 0) revert PayoutsNothingToWithdraw(account, asset);
        delete _credits[asset][account];
        emit CreditWithdrawn(account, asset, to, amount);
        _transferOut(asset, to, amount);
    }

    /// @notice The credited (pull) balance of `account` in `asset`.
    function creditOf(address asset, address account) external view returns (uint256) {
        return _credits[asset][account];
    }

    /// @dev Takes `amount` of `asset` from the caller: checks `value` (the payable entry point's `msg.value`) for ETH,
    /// or pulls the ERC-20 from `msg.sender` (never from an arbitrary address). Returns what actually arrived.
    // Safe because `arrived == 0` only rejects an empty deposit; no accounting relies on a balance matching exactly.
    // slither-disable-next-line incorrect-equality
    function _pullIn(address asset, uint256 amount, uint256 value) internal returns (uint128 received) {
        uint256 arrived;
        if (asset == NATIVE_ASSET) {
            if (value != amount) revert PayoutsValueMismatch(amount, value);
            arrived = amount;
        } else {
            if (value != 0) revert PayoutsValueMismatch(0, value);
            IERC20 token = IERC20(asset);
            uint256 before = token.balanceOf(address(this));
            token.safeTransferFrom(msg.sender, address(this), amount);
            arrived = token.balanceOf(address(this)) - before;
        }
        if (arrived == 0 || arrived > type(uint128).max) revert PayoutsInvalidAmount(arrived);
        received = uint128(arrived);
    }

    /// @dev Sends `amount` to `to` or reverts (used where the caller picks the recipient).
    function _transferOut(address asset, address to, uint256 amount) internal {
        if (asset == NATIVE_ASSET) {
            bool ok;
            assembly ("memory-safe") {
                ok := call(gas(), to, amount, 0, 0, 0, 0)
            }
            if (!ok) revert PayoutsTransferFailed(asset, to, amount);
        } else if (!IERC20(asset).trySafeTransfer(to, amount)) {
            revert PayoutsTransferFailed(asset, to, amount);
        }
    }

    /// @dev Pushes `amount` to `to` (ETH with `PUSH_GAS_LIMIT` gas, no return data copied); on failure credits it to
    /// `to`'s withdrawable balance. Never reverts because of the recipient.
    function _pushOrCredit(address asset, address to, uint256 amount) internal {
        bool ok;
        if (asset == NATIVE_ASSET) {
            assembly ("memory-safe") {
                ok := call(PUSH_GAS_LIMIT, to, amount, 0, 0, 0, 0)
            }
        } else {
            ok = IERC20(asset).trySafeTransfer(to, amount);
        }
        if (!ok) {
            _credits[asset][to] += amount;
            emit PayoutCredited(to, asset, amount);
        }
    }
}
