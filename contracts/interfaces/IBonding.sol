// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IBonding, slashable bonds of staked POD per operator account
 * @notice Operators bond stkPOD shares (see {IStakedPOD}) to their account; one bond covers every node the
 * account registers. Unbonding thaws for {thawPeriod} (3 months) and stays slashable while it thaws. The
 * active bond is checkpointed by timestamp so the epoch snapshot can read it at any past moment, and
 * ValidatorQuorum checks elected validators against it. Only the slasher (the Slashing contract, bound once
 * at deployment) can slash.
 */
interface IBonding {
    /// @notice `shares` stkPOD, paid by `from`, were added to the active bond of `account`.
    event Bonded(address indexed account, address indexed from, uint256 shares);

    /// @notice `account` moved `shares` from its active bond into thawing request `requestId`.
    event UnbondRequested(address indexed account, uint256 indexed requestId, uint256 shares, uint256 unlockTime);

    /// @notice Thawed request `requestId` paid `shares` (what slashing left of it) back to `account`.
    event UnbondWithdrawn(address indexed account, uint256 indexed requestId, uint256 shares);

    /// @notice `operator` registered the node whose libp2p peer id hashes to `peerIdHash`.
    event NodeRegistered(address indexed operator, bytes32 indexed peerIdHash);

    /// @notice `operator` removed the node whose libp2p peer id hashes to `peerIdHash`.
    event NodeUnregistered(address indexed operator, bytes32 indexed peerIdHash);

    /// @notice `slasher` became the one account that may slash, for good.
    event SlasherBound(address slasher);

    /// @notice `shares` of the bond of `account` were slashed: `reporterShares` to `reporter`, the rest
    /// (`removedShares`) redeemed and burned as POD.
    event Slashed(
        address indexed account,
        uint256 shares,
        address indexed reporter,
        uint256 reporterShares,
        uint256 removedShares
    );

    /// @notice Governance set the thaw period for new unbond requests.
    event ThawPeriodSet(uint256 thawPeriod);

    /// @notice Adds `shares` stkPOD from the caller to the caller's active bond.
    function bond(uint256 shares) external;

    /// @notice Adds `shares` stkPOD pulled from the caller to the active bond of `account` (the
    /// RewardsDistributor's "claim bonded" path).
    function bondFor(address account, uint256 shares) external;

    /// @notice Moves `shares` of the caller's active bond into a new thawing request; it stops counting for
    /// boost and validation at once, stays slashable, and can be withdrawn after {thawPeriod}.
    function requestUnbond(uint256 shares) external returns (uint256 requestId);

    /// @notice Pays the caller's thawed request `requestId` (what slashing left of it) back in stkPOD.
    function withdrawUnbonded(uint256 requestId) external;

    /**
     * @notice Records that `operator` runs the node whose libp2p peer id hashes to `peerIdHash`
     * (keccak256 of the peer id's multihash bytes). Anyone may relay the operator's EIP-712 signature of
     * `NodeBinding(address operator,bytes32 peerIdHash,uint256 nonce)`; `nonce` must equal the operator's
     * next nonce, so a binding cannot be replayed.
     */
    function registerNode(address operator, bytes32 peerIdHash, uint256 nonce, bytes calldata signature) external;

    /// @notice Removes a node the caller registered.
    function unregisterNode(bytes32 peerIdHash) external;

    /// @notice Slashes `shares` from `account`, active bond first, then thawing; `reporterBps` of them go to
    /// `reporter` (bonded to it when `bondReporterCut`, as for a validator, else paid in stkPOD), none if
    /// `reporter` is zero; the rest is burned. Only the slasher (the Slashing contract).
    function slash(address account, uint256 shares, address reporter, uint256 reporterBps, bool bondReporterCut)
        external;

    /// @notice The next NodeBinding nonce of `operator`.
    function nonces(address operator) external view returns (uint256);

    /// @notice Whether `operator` registered the node whose peer id hashes to `peerIdHash`.
    function isNodeOf(address operator, bytes32 peerIdHash) external view returns (bool);

    /**
     * @notice Whether a strike on the node of `peerIdHash` may still slash `operator`: it is registered now,
     * or was unregistered at most UNBOUND_SLASHABLE_PERIOD ago (unregistering does not escape a strike).
     */
    function isSlashableNodeOf(address operator, bytes32 peerIdHash) external view returns (bool);

    /// @notice Active bond of `account` in stkPOD shares.
    function activeBondOf(address account) external view returns (uint256 shares);

    /// @notice Active bond of `account` at past `timepoint` (a timestamp before the current block's).
    function activeBondAt(address account, uint256 timepoint) external view returns (uint256 shares);

    /// @notice stkPOD shares of `account` still thawing (slashable, not active).
    function thawingOf(address account) external view returns (uint256 shares);

    /// @notice Active plus thawing shares of `account`: what a slash can take.
    function slashableOf(address account) external view returns (uint256 shares);

    /// @notice The active bond of `account` valued in POD through the vault's share price.
    function bondValueInPOD(address account) external view returns (uint256);

    /// @notice What a request holds now: its account, when it unlocks, and its shares after slashes.
    function unbondRequest(uint256 requestId)
        external
        view
        returns (address account, uint256 unlockTime, uint256 shares);

    /// @notice The stkPOD vault whose shares are bonded.
    function vault() external view returns (address);

    /// @notice The thaw period applied to new unbond requests.
    function thawPeriod() external view returns (uint256);

    /// @notice The one account that may slash (the Slashing contract); zero until bound.
    function slasher() external view returns (address);
}
