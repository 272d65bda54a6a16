// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IUniswapV2Factory} from "@uniswap/v2-core/contracts/interfaces/IUniswapV2Factory.sol";
import {IUniswapV2Pair} from "@uniswap/v2-core/contracts/interfaces/IUniswapV2Pair.sol";
import {IUniswapV2Router02} from "@uniswap/v2-periphery/contracts/interfaces/IUniswapV2Router02.sol";

import {IStakedPOD} from "../interfaces/IStakedPOD.sol";

/**
 * @title Buyback, 100% of protocol revenue into POD
 * @notice Holds the payment token that Credits debits, and on a keeper's call swaps it for POD on the
 * Uniswap V2 pair through Router02. The POD then vests into StakedPOD (raising the stkPOD share price, in the
 * manner of xSUSHI) or is burned, by governance choice (and burned while nobody holds stkPOD, since a reward
 * to an empty vault would go to whoever deposits first).
 *
 * A public swap of a predictable size is a sandwich target, so each call is guarded three ways:
 * - a minimum output quoted at the pair's time-weighted average price (the pair's priceXCumulativeLast
 *   accumulators, read at two observations at least {twapWindow} apart), fee and own price impact included,
 *   less {maxSlippageBps}: moving the spot price just before the call does not move that minimum, so the
 *   swap reverts instead of filling at the manipulated price, and what a sandwich inside the allowance can
 *   take is bounded by the allowance;
 * - a deadline, so a call held back by a block builder cannot land later at a worse price;
 * - a per-call size cap, which bounds the price impact of one swap.
 *
 * Observations: this contract keeps the two latest cumulative-price observations. {observe} (keepers
 * only, at most once per {twapWindow}) shifts them; a buyback measures the TWAP from the newest observation
 * that is at least {twapWindow} old, and refuses one older than `3 * twapWindow`, whose average would no
 * longer describe the current price. A keeper calls {observe} on every round, so one always qualifies.
 * Only keepers observe so that nobody else can choose where a TWAP starts (an attacker who can time the
 * anchor to the start of a price push they sustain gets to pick the window the average covers), and the
 * window is at least {MIN_TWAP_WINDOW}, long enough that holding a manipulated price for a whole window
 * costs far more than a buyback's slippage allowance can return.
 */
contract Buyback is AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Accounts allowed to trigger swaps.
    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");

    uint256 public constant MIN_TWAP_WINDOW = 30 minutes;
    uint256 public constant MAX_TWAP_WINDOW = 1 days;
    /// @dev An observation older than this many windows is stale.
    uint256 public constant MAX_OBSERVATION_AGE_WINDOWS = 3;
    uint256 public constant MIN_SLIPPAGE_BPS = 10;
    uint256 public constant MAX_SLIPPAGE_BPS = 2000;
    uint256 private constant _BPS = 10_000;
    /// @dev Uniswap V2 prices are UQ112x112 fixed point.
    uint256 private constant _Q112 = 2 ** 112;

    /// @notice What happens to the POD a buyback buys.
    enum Destination {
        Stakers,
        Burn
    }

    struct Observation {
        uint256 priceCumulative;
        uint256 timestamp;
    }

    IERC20 private immutable _paymentToken;
    IERC20 private immutable _pod;
    IStakedPOD private immutable _stakedPod;
    IUniswapV2Router02 private immutable _router;
    IUniswapV2Pair private immutable _pair;
    /// @dev Whether the payment token is the pair's token0, which picks the accumulator to read.
    bool private immutable _paymentIsToken0;

    Observation private _older;
    Observation private _newer;
    uint256 private _twapWindow;
    uint256 private _maxSlippageBps;
    uint256 private _maxSwapAmount;
    Destination private _destination;

    /// @dev The router's factory has no pair for the payment token and POD.
    error BuybackPairMissing();
    /// @dev The pair has no liquidity, so it has no price.
    error BuybackNoLiquidity();
    /// @dev A zero amount where a positive one is needed.
    error BuybackZeroAmount();
    /// @dev The zero address where a contract is needed.
    error BuybackZeroAddress();
    /// @dev The keeper's deadline passed.
    error BuybackExpired(uint256 deadline);
    /// @dev `amount` is above the per-call cap.
    error BuybackAmountAboveCap(uint256 amount, uint256 cap);
    /// @dev `amount` is more than the contract holds.
    error BuybackInsufficientBalance(uint256 amount, uint256 balance);
    /// @dev No observation is at least one window old yet: call {observe} and wait.
    error BuybackTwapNotReady(uint256 readyAt);
    /// @dev The usable observation is older than MAX_OBSERVATION_AGE_WINDOWS windows: call {observe}.
    error BuybackTwapStale(uint256 observedAt);
    /// @dev {observe} was called again within one window of the last observation.
    error BuybackObservationTooSoon(uint256 nextAt);
    /// @dev A governance setting outside its bounds; `setting` names it.
    error BuybackSettingOutOfBounds(string setting, uint256 value, uint256 min, uint256 max);

    /// @notice A cumulative price observation was stored.
    event Observed(uint256 priceCumulative, uint256 timestamp);
    /// @notice `amountIn` of the payment token bought `podOut` POD (minimum `minPodOut`), sent to `destination`.
    event BoughtBack(uint256 amountIn, uint256 podOut, uint256 minPodOut, Destination destination);
    /// @notice Governance set the least time a TWAP spans.
    event TwapWindowSet(uint256 window);
    /// @notice Governance set how far below the TWAP quote a swap may fill.
    event MaxSlippageSet(uint256 bps);
    /// @notice Governance set the most payment token one call may swap.
    event MaxSwapAmountSet(uint256 amount);
    /// @notice Governance chose where bought POD goes.
    event DestinationSet(Destination destination);

    /**
     * @param router Uniswap V2 Router02 whose factory holds the payment/POD pair
     * @param paymentToken the revenue token Credits sends here
     * @param pod POD (burnable)
     * @param stakedPod the vault that receives bought POD as vesting rewards
     * @param admin the TimelockController (grants keepers, sets the guards)
     * @param twapWindow seconds the TWAP spans at least
     * @param maxSlippageBps how far below the TWAP quote (fee and impact included) a swap may fill
     * @param maxSwapAmount most payment token one call may swap
     */
    constructor(
        IUniswapV2Router02 router,
        IERC20 paymentToken,
        IERC20 pod,
        IStakedPOD stakedPod,
        address admin,
        uint256 twapWindow,
        uint256 maxSlippageBps,
        uint256 maxSwapAmount
    ) {
        if (
            address(router) == address(0) || address(paymentToken) == address(0) || address(pod) == address(0)
                || address(stakedPod) == address(0) || admin == address(0)
        ) revert BuybackZeroAddress();
        address pair = IUniswapV2Factory(router.factory()).getPair(address(paymentToken), address(pod));
        if (pair == address(0)) revert BuybackPairMissing();
        _router = router;
        _paymentToken = paymentToken;
        _pod = pod;
        _stakedPod = stakedPod;
        _pair = IUniswapV2Pair(pair);
        _paymentIsToken0 = IUniswapV2Pair(pair).token0() == address(paymentToken);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setTwapWindow(twapWindow);
        _setMaxSlippageBps(maxSlippageBps);
        _setMaxSwapAmount(maxSwapAmount);
        _record();
    }

    // ---------------------------------------------------------------- keeper

    /**
     * @notice Stores a new cumulative-price observation; keepers only, at most once per window (so the
     * observations stay at least a window apart).
     */
    function observe() external onlyRole(KEEPER_ROLE) {
        uint256 nextAt = _newer.timestamp + _twapWindow;
        if (block.timestamp < nextAt) revert BuybackObservationTooSoon(nextAt);
        _record();
    }

    /**
     * @notice Swaps `amountIn` of the payment token for POD and sends it to the chosen destination.
     * @param minPodOut the keeper's own floor; the swap uses the higher of it and the TWAP-derived minimum
     * @param deadline last timestamp at which the swap may execute
     * @return podOut the POD bought
     */
    function buyback(uint256 amountIn, uint256 minPodOut, uint256 deadline)
        external
        onlyRole(KEEPER_ROLE)
        returns (uint256 podOut)
    {
        if (block.timestamp > deadline) revert BuybackExpired(deadline);
        if (amountIn == 0) revert BuybackZeroAmount();
        if (amountIn > _maxSwapAmount) revert BuybackAmountAboveCap(amountIn, _maxSwapAmount);
        uint256 balance = _paymentToken.balanceOf(address(this));
        if (amountIn > balance) revert BuybackInsufficientBalance(amountIn, balance);

        uint256 twapMin = twapMinimumOut(amountIn);
        uint256 minOut = Math.max(twapMin, minPodOut);

        address[] memory path = new address[](2);
        path[0] = address(_paymentToken);
        path[1] = address(_pod);
        _paymentToken.forceApprove(address(_router), amountIn);
        // Router02 reverts with "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT" below minOut.
        uint256[] memory amounts =
            _router.swapExactTokensForTokens(amountIn, minOut, path, address(this), deadline);
        podOut = amounts[1];

        // With no stkPOD in existence a notified reward would be claimed by the next depositor alone: burn.
        Destination destination = _stakedPod.totalSupply() == 0 ? Destination.Burn : _destination;
        emit BoughtBack(amountIn, podOut, minOut, destination);
        if (destination == Destination.Burn) {
            ERC20Burnable(address(_pod)).burn(podOut);
        } else {
            _pod.forceApprove(address(_stakedPod), podOut);
            _stakedPod.notifyRewards(podOut);
        }
    }

    /**
     * @notice The least POD a swap of `amountIn` may return now: Uniswap V2's `getAmountOut` (0.3% fee) at the
     * time-weighted average price, with the pair's current depth, less {maxSlippageBps}. Pricing the fee and
     * this swap's own impact into the quote leaves the slippage allowance only the drift between the average
     * and now, which is all a sandwich could take. Reverts when no observation is usable (see
     * {BuybackTwapNotReady}, {BuybackTwapStale}).
     */
    function twapMinimumOut(uint256 amountIn) public view returns (uint256) {
        (uint256 cumulativeNow, uint256 now_, uint256 depth) = _currentCumulative();
        Observation memory anchor = _twapAnchor(now_);
        uint256 averagePrice;
        // Uniswap V2 accumulators are designed to wrap; the difference is right modulo 2**256. The average is
        // at least 1: a price below 2**-112 POD per unit would need a reserve above uint112.
        unchecked {
            averagePrice = (cumulativeNow - anchor.priceCumulative) / (now_ - anchor.timestamp);
        }
        // The reserves a pool of the current depth k = reserve0 * reserve1 holds at the average price. Swaps
        // move the price but keep k (fees only raise it), so an attacker cannot shift these reserves short of
        // adding or removing liquidity.
        uint256 reservePayment = Math.sqrt(Math.mulDiv(depth, _Q112, averagePrice));
        uint256 reservePod = Math.sqrt(Math.mulDiv(depth, averagePrice, _Q112));
        uint256 amountInWithFee = amountIn * 997;
        uint256 quote = Math.mulDiv(amountInWithFee, reservePod, reservePayment * 1000 + amountInWithFee);
        return Math.mulDiv(quote, _BPS - _maxSlippageBps, _BPS);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Sets the TWAP window, within [MIN_TWAP_WINDOW, MAX_TWAP_WINDOW]. Only the admin (timelock).
    function setTwapWindow(uint256 window) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setTwapWindow(window);
    }

    /// @notice Sets the slippage allowed below the TWAP quote, within [MIN_SLIPPAGE_BPS, MAX_SLIPPAGE_BPS].
    function setMaxSlippageBps(uint256 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setMaxSlippageBps(bps);
    }

    /// @notice Sets the per-call cap: any positive amount, which governance sizes to the pair's depth.
    function setMaxSwapAmount(uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setMaxSwapAmount(amount);
    }

    /// @notice Chooses between vesting bought POD to stakers and burning it.
    function setDestination(Destination destination) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _destination = destination;
        emit DestinationSet(destination);
    }

    // ---------------------------------------------------------------- views

    /// @notice The two stored cumulative-price observations, older first.
    function observations() external view returns (Observation memory older, Observation memory newer) {
        return (_older, _newer);
    }

    function twapWindow() external view returns (uint256) {
        return _twapWindow;
    }

    function maxSlippageBps() external view returns (uint256) {
        return _maxSlippageBps;
    }

    function maxSwapAmount() external view returns (uint256) {
        return _maxSwapAmount;
    }

    function destination() external view returns (Destination) {
        return _destination;
    }

    function pair() external view returns (address) {
        return address(_pair);
    }

    function router() external view returns (address) {
        return address(_router);
    }

    function paymentToken() external view returns (address) {
        return address(_paymentToken);
    }

    function pod() external view returns (address) {
        return address(_pod);
    }

    function stakedPod() external view returns (address) {
        return address(_stakedPod);
    }

    // ---------------------------------------------------------------- internals

    function _record() private {
        (uint256 cumulative, uint256 now_,) = _currentCumulative();
        _older = _newer;
        _newer = Observation({priceCumulative: cumulative, timestamp: now_});
        emit Observed(cumulative, now_);
    }

    /// @dev The newest observation at least one window old, if it is not stale.
    function _twapAnchor(uint256 now_) private view returns (Observation memory anchor) {
        uint256 window = _twapWindow;
        uint256 maxAge = MAX_OBSERVATION_AGE_WINDOWS * window;
        if (now_ - _newer.timestamp >= window) {
            if (now_ - _newer.timestamp > maxAge) revert BuybackTwapStale(_newer.timestamp);
            return _newer;
        }
        // The newer one is too young; the older one serves if it is old enough but not stale (after a
        // long pause {observe} shifts a stale observation into this slot: then wait for the new one).
        uint256 olderAge = now_ - _older.timestamp;
        if (_older.timestamp != 0 && olderAge >= window && olderAge <= maxAge) return _older;
        revert BuybackTwapNotReady(_newer.timestamp + window);
    }

    /**
     * @dev The pair's accumulator of the payment token's price in POD (POD per payment token, UQ112x112
     * times seconds), brought up to the current second the way the pair itself would if it were updated now
     * (UniswapV2OracleLibrary.currentCumulativePrices), so no pair interaction is needed. Also returns the
     * pair's depth, the product of its reserves.
     */
    function _currentCumulative() private view returns (uint256 cumulative, uint256 now_, uint256 depth) {
        now_ = block.timestamp;
        (uint112 reserve0, uint112 reserve1, uint32 lastUpdate) = _pair.getReserves();
        if (reserve0 == 0 || reserve1 == 0) revert BuybackNoLiquidity();
        depth = uint256(reserve0) * reserve1;
        cumulative = _paymentIsToken0 ? _pair.price0CumulativeLast() : _pair.price1CumulativeLast();
        unchecked {
            // The pair stores time modulo 2**32; the subtraction wraps the same way (v2-core `_update`).
            uint32 elapsed = uint32(now_) - lastUpdate;
            if (elapsed > 0) {
                // price0 = reserve1 / reserve0 and price1 = reserve0 / reserve1, as UQ112x112.
                uint256 price = _paymentIsToken0
                    ? (uint256(reserve1) * _Q112) / reserve0
                    : (uint256(reserve0) * _Q112) / reserve1;
                cumulative += price * elapsed;
            }
        }
    }

    function _setTwapWindow(uint256 window) private {
        if (window < MIN_TWAP_WINDOW || window > MAX_TWAP_WINDOW) {
            revert BuybackSettingOutOfBounds("twapWindow", window, MIN_TWAP_WINDOW, MAX_TWAP_WINDOW);
        }
        _twapWindow = window;
        emit TwapWindowSet(window);
    }

    function _setMaxSlippageBps(uint256 bps) private {
        if (bps < MIN_SLIPPAGE_BPS || bps > MAX_SLIPPAGE_BPS) {
            revert BuybackSettingOutOfBounds("maxSlippageBps", bps, MIN_SLIPPAGE_BPS, MAX_SLIPPAGE_BPS);
        }
        _maxSlippageBps = bps;
        emit MaxSlippageSet(bps);
    }

    function _setMaxSwapAmount(uint256 amount) private {
        if (amount == 0) revert BuybackSettingOutOfBounds("maxSwapAmount", amount, 1, type(uint256).max);
        _maxSwapAmount = amount;
        emit MaxSwapAmountSet(amount);
    }
}
