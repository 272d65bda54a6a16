// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";

/**
 * @title IStakedPOD, the auto-compounding POD vault (stkPOD)
 * @notice An ERC-4626 vault over POD in the manner of xSUSHI: buybacks and other rewards are added to the
 * vault's assets, so every share redeems for more POD over time and there is nothing to claim. Rewards vest
 * linearly instead of jumping, so nobody can sandwich a buyback. Leaving takes a stkAAVE-style cooldown:
 * {cooldown} snapshots the caller's shares, which can be redeemed once {COOLDOWN_PERIOD} has passed and
 * until {UNSTAKE_WINDOW} closes after that.
 */
interface IStakedPOD is IERC4626 {
    /// @notice `from` added `amount` POD of rewards, which vest linearly until `vestingEnd`.
    event RewardsNotified(address indexed from, uint256 amount, uint256 vestingEnd);

    /// @notice `account` started a cooldown at `start` covering `shares` of its shares.
    event CooldownStarted(address indexed account, uint256 shares, uint256 start);

    /**
     * @notice Pulls `amount` POD from the caller (who must have approved the vault) and vests it linearly
     * into {totalAssets}. Anyone may add rewards; the Buyback contract does so with every swap.
     */
    function notifyRewards(uint256 amount) external;

    /// @notice Starts (or restarts) the caller's cooldown, snapshotting its current share balance.
    function cooldown() external;

    /**
     * @notice The cooldown of `account`: when it started (0 if none) and how many shares it still covers.
     * Shares received after the snapshot are not covered; shares sent away shrink the covered amount.
     */
    function cooldownOf(address account) external view returns (uint256 start, uint256 shares);

    /// @notice POD notified as rewards that has not vested yet (excluded from {totalAssets}).
    function unvestedRewards() external view returns (uint256);

    /// @notice When the rewards notified so far will have fully vested.
    function rewardsVestingEnd() external view returns (uint256);

    /// @notice Time between {cooldown} and the first moment its shares can be redeemed (90 days).
    // solhint-disable-next-line func-name-mixedcase
    function COOLDOWN_PERIOD() external view returns (uint256);

    /// @notice How long, after the cooldown period, the covered shares stay redeemable (7 days).
    // solhint-disable-next-line func-name-mixedcase
    function UNSTAKE_WINDOW() external view returns (uint256);

    /// @notice The period over which each notified reward vests (7 days).
    // solhint-disable-next-line func-name-mixedcase
    function REWARDS_VESTING_PERIOD() external view returns (uint256);
}
