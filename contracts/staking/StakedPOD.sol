// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IStakedPOD} from "../interfaces/IStakedPOD.sol";

/**
 * @title StakedPOD (stkPOD), the auto-compounding POD vault
 * @notice See {IStakedPOD}. Four rules are ours, on top of OpenZeppelin's ERC-4626:
 *
 * 1. Accounted assets. {totalAssets} is what the vault has *accounted* (deposits minus withdrawals plus
 *    notified rewards) less the rewards that have not vested yet — never `balanceOf(this)`. POD sent to the
 *    vault by plain transfer is ignored, so a donation cannot move the share price, and a reward moves it
 *    only as fast as it vests. Together with a decimals offset of 6 (virtual shares, OpenZeppelin's
 *    defence) this defeats the first-depositor inflation attack: the attacker's only lever, a notified
 *    reward, is shared with 10^6 virtual shares per unit of POD and costs far more than it can steal.
 * 2. Linear vesting. A notified reward is added to an unvested pool that drains linearly; {totalAssets} is
 *    continuous in time, so depositing just before a buyback and leaving just after earns only what vested
 *    in between. New rewards move the vesting end to the amount-weighted average of the old end and
 *    `now + REWARDS_VESTING_PERIOD`, so a dust notification cannot stall earlier rewards.
 * 3. stkAAVE-style cooldown. {cooldown} snapshots the caller's balance. Once {COOLDOWN_PERIOD} has passed,
 *    up to the snapshot can be withdrawn during {UNSTAKE_WINDOW}; {maxRedeem}/{maxWithdraw} report 0 at any
 *    other time, as ERC-4626 requires of a call that would revert. Holders of {COOLDOWN_EXEMPT_ROLE} (the
 *    Bonding contract, whose 3-month thaw already locks shares, and which redeems only to burn slashed
 *    stake) skip the cooldown.
 * 4. Staking keeps its say. Shares are ERC-5805 votes (OpenZeppelin's ERC20Votes, timestamp clock like
 *    POD's), delegated like POD's, which the Governor counts at the share price (as stkAAVE votes in Aave's
 *    governance): staking POD for buybacks does not take it out of governance. Rewards are refused while
 *    no shares exist ({StakedPODNoStakers}): with nobody to vest them to, they would go to whoever deposits
 *    first.
 */
contract StakedPOD is IStakedPOD, ERC4626, ERC20Votes, AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Accounts that may redeem without a cooldown; granted by governance to Bonding only.
    bytes32 public constant COOLDOWN_EXEMPT_ROLE = keccak256("COOLDOWN_EXEMPT_ROLE");

    /// @inheritdoc IStakedPOD
    uint256 public constant COOLDOWN_PERIOD = 90 days;
    /// @inheritdoc IStakedPOD
    uint256 public constant UNSTAKE_WINDOW = 7 days;
    /// @inheritdoc IStakedPOD
    uint256 public constant REWARDS_VESTING_PERIOD = 7 days;

    struct Cooldown {
        uint48 start;
        uint208 shares;
    }

    /// @dev Deposits minus withdrawals plus every notified reward (vested or not).
    uint256 private _accountedAssets;
    /// @dev Unvested rewards as of `_vestingUpdatedAt`; they drain linearly to zero at `_vestingEnd`.
    uint256 private _unvestedAtUpdate;
    uint48 private _vestingUpdatedAt;
    uint48 private _vestingEnd;

    mapping(address account => Cooldown) private _cooldowns;

    /// @dev `notifyRewards(0)` would only move the vesting schedule.
    error StakedPODZeroRewards();
    /// @dev No stkPOD exists: a reward now would all go to the next depositor.
    error StakedPODNoStakers();
    /// @dev A cooldown of nothing would cover nothing.
    error StakedPODZeroBalance(address account);
    /// @dev `account` never started a cooldown (or redeemed all it covered).
    error StakedPODNoCooldown(address account);
    /// @dev The cooldown of `account` ends at `unlockTime`.
    error StakedPODCooldownNotFinished(address account, uint256 unlockTime);
    /// @dev The unstake window of `account` closed at `windowEnd`; start a new cooldown.
    error StakedPODUnstakeWindowClosed(address account, uint256 windowEnd);
    /// @dev `account` asked to withdraw `shares` but its cooldown covers only `covered`.
    error StakedPODExceedsCooldown(address account, uint256 shares, uint256 covered);

    /**
     * @param pod the POD token held by the vault
     * @param admin receives DEFAULT_ADMIN_ROLE (the timelock), which grants {COOLDOWN_EXEMPT_ROLE}
     */
    constructor(IERC20 pod, address admin) ERC20("Staked POD", "stkPOD") ERC4626(pod) EIP712("Staked POD", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ---------------------------------------------------------------- rewards

    /// @inheritdoc IStakedPOD
    function notifyRewards(uint256 amount) external {
        if (amount == 0) revert StakedPODZeroRewards();
        if (totalSupply() == 0) revert StakedPODNoStakers();
        // Pull first, as ERC4626._deposit does: POD has no transfer hooks, and accounting only what arrived
        // keeps `balanceOf(this) >= _accountedAssets` at every step.
        IERC20(asset()).safeTransferFrom(_msgSender(), address(this), amount);

        uint256 unvested = unvestedRewards();
        uint256 freshEnd = block.timestamp + REWARDS_VESTING_PERIOD;
        // Amount-weighted end: equals freshEnd when nothing is vesting; a small top-up barely moves it.
        uint256 end = (unvested * _vestingEnd + amount * freshEnd) / (unvested + amount);

        _accountedAssets += amount;
        // totalAssets() is unchanged at this instant: the reward enters the unvested pool in full.
        _unvestedAtUpdate = unvested + amount;
        _vestingUpdatedAt = SafeCast.toUint48(block.timestamp);
        _vestingEnd = SafeCast.toUint48(end);
        emit RewardsNotified(_msgSender(), amount, end);
    }

    /// @inheritdoc IStakedPOD
    function unvestedRewards() public view returns (uint256) {
        uint256 end = _vestingEnd;
        if (block.timestamp >= end) return 0;
        // Linear drain from `_vestingUpdatedAt` (where it was `_unvestedAtUpdate`) to zero at `end`;
        // rounding down only lets totalAssets lead by under one wei, never past the accounted assets.
        return Math.mulDiv(_unvestedAtUpdate, end - block.timestamp, end - _vestingUpdatedAt);
    }

    /// @inheritdoc IStakedPOD
    function rewardsVestingEnd() external view returns (uint256) {
        return _vestingEnd;
    }

    /// @inheritdoc ERC4626
    function totalAssets() public view override(ERC4626, IERC4626) returns (uint256) {
        return _accountedAssets - unvestedRewards();
    }

    // ---------------------------------------------------------------- cooldown

    /// @inheritdoc IStakedPOD
    function cooldown() external {
        address account = _msgSender();
        uint256 shares = balanceOf(account);
        if (shares == 0) revert StakedPODZeroBalance(account);
        _cooldowns[account] = Cooldown(SafeCast.toUint48(block.timestamp), SafeCast.toUint208(shares));
        emit CooldownStarted(account, shares, block.timestamp);
    }

    /// @inheritdoc IStakedPOD
    function cooldownOf(address account) external view returns (uint256 start, uint256 shares) {
        Cooldown memory c = _cooldowns[account];
        return (c.start, c.shares);
    }

    /// @inheritdoc ERC4626
    /// @dev 0 outside the caller's unstake window, else the shares its cooldown still covers.
    function maxRedeem(address owner) public view override(ERC4626, IERC4626) returns (uint256) {
        if (hasRole(COOLDOWN_EXEMPT_ROLE, owner)) return balanceOf(owner);
        Cooldown memory c = _cooldowns[owner];
        if (c.start == 0) return 0;
        uint256 unlock = uint256(c.start) + COOLDOWN_PERIOD;
        if (block.timestamp < unlock || block.timestamp > unlock + UNSTAKE_WINDOW) return 0;
        return c.shares;
    }

    /// @inheritdoc ERC4626
    /// @dev Checks the cooldown first so the caller learns why, not just that the amount exceeds the max.
    function withdraw(uint256 assets, address receiver, address owner)
        public
        override(ERC4626, IERC4626)
        returns (uint256)
    {
        _requireCooldownCovers(owner, previewWithdraw(assets));
        return super.withdraw(assets, receiver, owner);
    }

    /// @inheritdoc ERC4626
    function redeem(uint256 shares, address receiver, address owner)
        public
        override(ERC4626, IERC4626)
        returns (uint256)
    {
        _requireCooldownCovers(owner, shares);
        return super.redeem(shares, receiver, owner);
    }

    // ---------------------------------------------------------------- internals

    function _requireCooldownCovers(address owner, uint256 shares) private view {
        if (hasRole(COOLDOWN_EXEMPT_ROLE, owner)) return;
        Cooldown memory c = _cooldowns[owner];
        if (c.start == 0 || c.shares == 0) revert StakedPODNoCooldown(owner);
        uint256 unlock = uint256(c.start) + COOLDOWN_PERIOD;
        if (block.timestamp < unlock) revert StakedPODCooldownNotFinished(owner, unlock);
        uint256 windowEnd = unlock + UNSTAKE_WINDOW;
        if (block.timestamp > windowEnd) revert StakedPODUnstakeWindowClosed(owner, windowEnd);
        if (shares > c.shares) revert StakedPODExceedsCooldown(owner, shares, c.shares);
    }

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        super._deposit(caller, receiver, assets, shares);
        _accountedAssets += assets;
    }

    function _withdraw(address caller, address receiver, address owner, uint256 assets, uint256 shares)
        internal
        override
    {
        // Safe: assets <= previewRedeem(totalSupply) <= totalAssets() <= _accountedAssets. Accounted before the
        // transfer out, as the burn is (ERC4626._withdraw's reentrancy reasoning).
        _accountedAssets -= assets;
        super._withdraw(caller, receiver, owner, assets, shares);
    }

    /**
     * @dev Keeps each cooldown covering no more than the sender held throughout it. Shares received are never
     * covered: a cooldown speaks only for the shares it snapshotted, so receiving cannot shorten anyone's wait
     * (this is stkAAVE v3's snapshot rule; its older weighted-average timestamp rule only *delays* the receiver,
     * which punishes receivers without adding safety). Shares sent away shrink the covered amount to the
     * balance left; shares redeemed use up the cover.
     */
    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
        if (from == address(0)) return;
        Cooldown storage c = _cooldowns[from];
        uint256 covered = c.shares;
        if (covered == 0) return;
        if (to == address(0)) covered -= Math.min(value, covered);
        covered = Math.min(covered, balanceOf(from));
        c.shares = uint208(covered); // Safe: never above the value it was read from.
    }

    /// @notice Votes checkpoint by timestamp (ERC-6372), like POD's, so the Governor reads both at one clock.
    function clock() public view override returns (uint48) {
        return SafeCast.toUint48(block.timestamp);
    }

    /// @notice ERC-6372 description of {clock}.
    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() public pure override returns (string memory) {
        return "mode=timestamp";
    }

    /// @inheritdoc ERC4626
    function decimals() public view override(ERC20, ERC4626, IERC20Metadata) returns (uint8) {
        return super.decimals();
    }

    /// @dev 10^6 virtual shares per unit of POD: the inflation-attack defence of OpenZeppelin's ERC4626.
    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }
}
