// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {IBonding} from "../interfaces/IBonding.sol";

/**
 * @title Bonding, slashable stkPOD bonds per operator account
 * @notice See {IBonding}. How the pieces fit:
 *
 * - Active bond: one checkpointed balance per account (OpenZeppelin `Checkpoints.Trace208`, keyed by
 *   timestamp like POD's votes), so the epoch snapshot reads {activeBondAt} for any past moment.
 * - Thawing: each account has one thaw pool, a tiny vault of its own: a request holds *points* of the pool,
 *   and a slash of thawing stake lowers the pool's shares, so every open request loses the same fraction
 *   in O(1), however many requests there are. Each request unlocks `thawPeriod` after it was made, on its
 *   own clock, so splitting an unbond into many requests never shortens any part's wait. A slash that
 *   empties the pool starts a new pool generation; requests of an emptied generation pay nothing.
 * - Validators are elected and weighed in ValidatorQuorum, from the active bonds checkpointed here.
 * - Slashing: only the slasher (the Slashing contract), bound once by the deploying account and never
 *   changeable: no governance path can grant itself the power to take bonds, whatever its delay. Active
 *   bond first, then the thaw pool. The reporter's cut is bonded to a reporting validator (the whitepaper
 *   rewards validators in bonded POD) or paid in stkPOD to a reporting user; the rest is redeemed and
 *   burned as POD (this contract holds the vault's cooldown exemption). Slashed stake is always burned:
 *   there is no recipient that a vote could redirect it to.
 */
contract Bonding is IBonding, AccessControl, EIP712, Nonces {
    using Checkpoints for Checkpoints.Trace208;
    using SafeERC20 for IERC20;

    /// @notice May set the thaw period: the timelock.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");

    bytes32 private constant NODE_BINDING_TYPEHASH =
        keccak256("NodeBinding(address operator,bytes32 peerIdHash,uint256 nonce)");

    uint256 public constant MIN_THAW_PERIOD = 30 days;
    uint256 public constant MAX_THAW_PERIOD = 365 days;
    /**
     * @notice How long a node's binding stays slashable after its operator unregisters it: the strike window
     * and the decision deadline fit in it (docs/contracts.md), and it equals the shortest thaw, so a bond
     * that starts to unbond stays slashable as long.
     */
    uint256 public constant UNBOUND_SLASHABLE_PERIOD = 30 days;
    uint256 private constant BPS = 10_000;

    struct ThawPool {
        uint256 shares;
        uint256 points;
        uint256 generation;
    }

    struct UnbondRequest {
        address account;
        uint48 unlockTime;
        uint256 generation;
        uint256 points;
    }

    IERC4626 private immutable _vault;
    /// @dev The deploying account: it alone binds the slasher, once.
    address private immutable _binder;

    address private _slasher;
    uint256 private _thawPeriod = 90 days;

    mapping(address account => Checkpoints.Trace208) private _activeBonds;
    mapping(address account => ThawPool) private _thawPools;
    mapping(uint256 requestId => UnbondRequest) private _requests;
    uint256 private _nextRequestId = 1;

    mapping(address operator => mapping(bytes32 peerIdHash => bool)) private _nodes;
    mapping(address operator => mapping(bytes32 peerIdHash => uint256 timestamp)) private _unregisteredAt;

    /// @dev A bond, unbond or slash of zero shares.
    error BondingZeroShares();
    /// @dev The zero address cannot hold a bond.
    error BondingInvalidAccount();
    /// @dev `account` has `active` shares bonded, fewer than the `shares` asked for.
    error BondingInsufficientActiveBond(address account, uint256 shares, uint256 active);
    /// @dev No unbond request has id `requestId` (never made, or already withdrawn).
    error BondingUnknownRequest(uint256 requestId);
    /// @dev `caller` does not own unbond request `requestId`.
    error BondingNotRequestOwner(uint256 requestId, address caller);
    /// @dev Unbond request `requestId` thaws until `unlockTime`.
    error BondingStillThawing(uint256 requestId, uint256 unlockTime);
    /// @dev The NodeBinding signature does not come from `operator`.
    error BondingInvalidSignature(address operator);
    /// @dev A zero peer id hash names no node.
    error BondingInvalidPeerId();
    /// @dev `operator` already registered `peerIdHash`.
    error BondingNodeAlreadyRegistered(address operator, bytes32 peerIdHash);
    /// @dev `operator` has not registered `peerIdHash`.
    error BondingNodeNotRegistered(address operator, bytes32 peerIdHash);
    /// @dev Only the slasher may slash; `caller` is not it.
    error BondingUnauthorizedSlasher(address caller);
    /// @dev Only the deploying account binds the slasher, and only once.
    error BondingSlasherNotBindable(address caller);
    /// @dev Slashing `shares` exceeds the `slashable` shares of `account`.
    error BondingSlashExceedsSlashable(address account, uint256 shares, uint256 slashable);
    /// @dev A reporter cut above 100%.
    error BondingInvalidReporterBps(uint256 reporterBps);
    /// @dev `timepoint` is not in the past (now is `currentTimepoint`).
    error BondingFutureLookup(uint256 timepoint, uint256 currentTimepoint);
    /// @dev Governance asked for `value`, outside [`min`, `max`].
    error BondingParameterOutOfBounds(uint256 value, uint256 min, uint256 max);

    /**
     * @param vault_ the stkPOD vault whose shares are bonded
     * @param admin receives DEFAULT_ADMIN_ROLE and PARAMETERS_ROLE (the timelock)
     */
    constructor(IERC4626 vault_, address admin) EIP712("Dolphin Network", "1") {
        _vault = vault_;
        _binder = _msgSender();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PARAMETERS_ROLE, admin);
    }

    // ---------------------------------------------------------------- bonds

    /// @inheritdoc IBonding
    function bond(uint256 shares) external {
        bondFor(_msgSender(), shares);
    }

    /// @inheritdoc IBonding
    function bondFor(address account, uint256 shares) public {
        if (account == address(0)) revert BondingInvalidAccount();
        if (shares == 0) revert BondingZeroShares();
        // Pull first: stkPOD is our own ERC-20 with no hooks, and crediting only what arrived keeps the
        // contract's share balance >= the sum of all bonds at every step.
        IERC20(address(_vault)).safeTransferFrom(_msgSender(), address(this), shares);
        _pushActive(account, activeBondOf(account) + shares);
        emit Bonded(account, _msgSender(), shares);
    }

    /// @inheritdoc IBonding
    function requestUnbond(uint256 shares) external returns (uint256 requestId) {
        address account = _msgSender();
        if (shares == 0) revert BondingZeroShares();
        uint256 active = activeBondOf(account);
        if (shares > active) revert BondingInsufficientActiveBond(account, shares, active);

        ThawPool storage pool = _thawPools[account];
        // Points priced at the pool's current (possibly slashed) rate, rounded down against the requester.
        // pool.shares > 0 whenever pool.points > 0: a slash that empties the pool also zeroes its points, and
        // only the last request out can take the pool's last share. (Points per share grow only when slashes
        // leave the pool nearly, not fully, empty; mulDiv reverts rather than overflow, which could only ever
        // block the slashed account's own new requests.)
        uint256 points = pool.points == 0 ? shares : Math.mulDiv(shares, pool.points, pool.shares);
        if (points == 0) revert BondingZeroShares();

        _pushActive(account, active - shares);
        pool.shares += shares;
        pool.points += points;
        requestId = _nextRequestId++;
        uint256 unlockTime = block.timestamp + _thawPeriod;
        _requests[requestId] = UnbondRequest(account, SafeCast.toUint48(unlockTime), pool.generation, points);
        emit UnbondRequested(account, requestId, shares, unlockTime);
    }

    /// @inheritdoc IBonding
    function withdrawUnbonded(uint256 requestId) external {
        UnbondRequest memory request = _requests[requestId];
        if (request.account == address(0)) revert BondingUnknownRequest(requestId);
        if (request.account != _msgSender()) revert BondingNotRequestOwner(requestId, _msgSender());
        if (block.timestamp < request.unlockTime) revert BondingStillThawing(requestId, request.unlockTime);

        ThawPool storage pool = _thawPools[request.account];
        uint256 shares = _requestShares(request, pool);
        if (request.generation == pool.generation) {
            pool.points -= request.points;
            pool.shares -= shares;
        }
        delete _requests[requestId];
        emit UnbondWithdrawn(request.account, requestId, shares);
        if (shares != 0) IERC20(address(_vault)).safeTransfer(request.account, shares);
    }

    // ---------------------------------------------------------------- nodes

    /// @inheritdoc IBonding
    function registerNode(address operator, bytes32 peerIdHash, uint256 nonce, bytes calldata signature) external {
        if (peerIdHash == bytes32(0)) revert BondingInvalidPeerId();
        _useCheckedNonce(operator, nonce);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(NODE_BINDING_TYPEHASH, operator, peerIdHash, nonce)));
        // SignatureChecker also accepts ERC-1271 contract wallets (a multisig operating many nodes).
        if (!SignatureChecker.isValidSignatureNow(operator, digest, signature)) {
            revert BondingInvalidSignature(operator);
        }
        if (_nodes[operator][peerIdHash]) revert BondingNodeAlreadyRegistered(operator, peerIdHash);
        // Claims are per operator, not first-come: a squatter binding someone's peer id to itself blocks
        // nobody. Off-chain, a binding is trusted only when the node's own libp2p record names the operator.
        _nodes[operator][peerIdHash] = true;
        emit NodeRegistered(operator, peerIdHash);
    }

    /// @inheritdoc IBonding
    function unregisterNode(bytes32 peerIdHash) external {
        address operator = _msgSender();
        if (!_nodes[operator][peerIdHash]) revert BondingNodeNotRegistered(operator, peerIdHash);
        delete _nodes[operator][peerIdHash];
        _unregisteredAt[operator][peerIdHash] = block.timestamp;
        emit NodeUnregistered(operator, peerIdHash);
    }

    // ---------------------------------------------------------------- slashing

    /**
     * @notice Names the one account that may slash (the Slashing contract, deployed after this one). Only the
     * deploying account, only once.
     */
    function bindSlasher(address slasher_) external {
        if (_msgSender() != _binder || _slasher != address(0) || slasher_ == address(0)) {
            revert BondingSlasherNotBindable(_msgSender());
        }
        _slasher = slasher_;
        emit SlasherBound(slasher_);
    }

    /// @inheritdoc IBonding
    function slash(address account, uint256 shares, address reporter, uint256 reporterBps, bool bondReporterCut)
        external
    {
        if (_msgSender() != _slasher) revert BondingUnauthorizedSlasher(_msgSender());
        if (shares == 0) revert BondingZeroShares();
        if (reporterBps > BPS) revert BondingInvalidReporterBps(reporterBps);
        uint256 active = activeBondOf(account);
        ThawPool storage pool = _thawPools[account];
        uint256 slashable = active + pool.shares;
        if (shares > slashable) revert BondingSlashExceedsSlashable(account, shares, slashable);

        uint256 fromActive = Math.min(shares, active);
        if (fromActive != 0) _pushActive(account, active - fromActive);
        uint256 fromThawing = shares - fromActive;
        if (fromThawing != 0) {
            pool.shares -= fromThawing;
            if (pool.shares == 0) {
                // Emptied: the open requests are worth nothing; a fresh generation keeps their points from
                // diluting requests made later.
                pool.points = 0;
                pool.generation += 1;
            }
        }

        uint256 reporterShares = reporter == address(0) ? 0 : Math.mulDiv(shares, reporterBps, BPS);
        uint256 removedShares = shares - reporterShares;
        emit Slashed(account, shares, reporter, reporterShares, removedShares);

        if (reporterShares != 0) {
            if (bondReporterCut) {
                // The whitepaper pays validators who catch a cheat in bonded POD: the cut stays here,
                // added to the reporter's active bond, with no transfer.
                _pushActive(reporter, activeBondOf(reporter) + reporterShares);
                emit Bonded(reporter, address(this), reporterShares);
            } else {
                IERC20(address(_vault)).safeTransfer(reporter, reporterShares);
            }
        }
        if (removedShares != 0) {
            // Needs the vault's COOLDOWN_EXEMPT_ROLE: the slashed shares were locked by this contract's own
            // thaw rules, so the vault's cooldown has nothing left to protect.
            uint256 assets = _vault.redeem(removedShares, address(this), address(this));
            ERC20Burnable(_vault.asset()).burn(assets);
        }
    }

    // ---------------------------------------------------------------- governance

    /// @notice Sets the thaw period of unbond requests made from now on (open requests keep theirs).
    function setThawPeriod(uint256 period) external onlyRole(PARAMETERS_ROLE) {
        if (period < MIN_THAW_PERIOD || period > MAX_THAW_PERIOD) {
            revert BondingParameterOutOfBounds(period, MIN_THAW_PERIOD, MAX_THAW_PERIOD);
        }
        _thawPeriod = period;
        emit ThawPeriodSet(period);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IBonding
    function nonces(address operator) public view override(IBonding, Nonces) returns (uint256) {
        return super.nonces(operator);
    }

    /// @inheritdoc IBonding
    function isNodeOf(address operator, bytes32 peerIdHash) external view returns (bool) {
        return _nodes[operator][peerIdHash];
    }

    /// @inheritdoc IBonding
    function isSlashableNodeOf(address operator, bytes32 peerIdHash) external view returns (bool) {
        if (_nodes[operator][peerIdHash]) return true;
        uint256 unregisteredAt = _unregisteredAt[operator][peerIdHash];
        return unregisteredAt != 0 && block.timestamp <= unregisteredAt + UNBOUND_SLASHABLE_PERIOD;
    }

    /// @inheritdoc IBonding
    function activeBondOf(address account) public view returns (uint256) {
        return _activeBonds[account].latest();
    }

    /// @inheritdoc IBonding
    /// @dev Strictly past timepoints only, as ERC-5805 `getPastVotes`: the current block can still change.
    function activeBondAt(address account, uint256 timepoint) external view returns (uint256) {
        uint48 now_ = clock();
        if (timepoint >= now_) revert BondingFutureLookup(timepoint, now_);
        return _activeBonds[account].upperLookupRecent(SafeCast.toUint48(timepoint));
    }

    /// @inheritdoc IBonding
    function thawingOf(address account) public view returns (uint256) {
        return _thawPools[account].shares;
    }

    /// @inheritdoc IBonding
    function slashableOf(address account) external view returns (uint256) {
        return activeBondOf(account) + thawingOf(account);
    }

    /// @inheritdoc IBonding
    function bondValueInPOD(address account) public view returns (uint256) {
        return _vault.convertToAssets(activeBondOf(account));
    }

    /// @inheritdoc IBonding
    function unbondRequest(uint256 requestId)
        external
        view
        returns (address account, uint256 unlockTime, uint256 shares)
    {
        UnbondRequest memory request = _requests[requestId];
        if (request.account == address(0)) return (address(0), 0, 0);
        return (request.account, request.unlockTime, _requestShares(request, _thawPools[request.account]));
    }

    /// @inheritdoc IBonding
    function vault() external view returns (address) {
        return address(_vault);
    }

    /// @inheritdoc IBonding
    function thawPeriod() external view returns (uint256) {
        return _thawPeriod;
    }

    /// @inheritdoc IBonding
    function slasher() external view returns (address) {
        return _slasher;
    }

    /// @notice Checkpoints are keyed by timestamp (ERC-6372), like POD's votes.
    function clock() public view returns (uint48) {
        return SafeCast.toUint48(block.timestamp);
    }

    /// @notice ERC-6372 description of {clock}.
    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() external pure returns (string memory) {
        return "mode=timestamp";
    }

    // ---------------------------------------------------------------- internals

    function _pushActive(address account, uint256 shares) private {
        _activeBonds[account].push(clock(), SafeCast.toUint208(shares));
    }

    /// @dev A request's share of its pool, rounded down; the last request out takes the remainder.
    function _requestShares(UnbondRequest memory request, ThawPool storage pool) private view returns (uint256) {
        if (request.generation != pool.generation) return 0;
        if (request.points == pool.points) return pool.shares;
        return Math.mulDiv(request.points, pool.shares, pool.points);
    }
}
