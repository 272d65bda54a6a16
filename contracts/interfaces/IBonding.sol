// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IBonding, slashable bonds of staked POD per operator account
 * @notice Operators bond stkPOD shares (see {IStakedPOD}) to their account; one bond covers every node the
 * account registers. Unbonding thaws for {thawPeriod} (3 months) and stays slashable while it thaws. The
 * active bond is checkpointed by timestamp so the epoch snapshot can read it at any past moment. Accounts
 * with at least {minValidatorBond} POD-worth of active bond that explicitly join are validators, weighted
 * by their active bond shares.
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

    /// @notice `account` opted in to (`joined` true) or out of validating.
    event ValidatorMembershipChanged(address indexed account, bool joined);

    /// @notice The validator weight of `account` became `weight` (0 = not a validator).
    event ValidatorWeightChanged(address indexed account, uint256 weight);

    /// @notice `shares` of the bond of `account` were slashed: `reporterShares` to `reporter`, the rest
    /// (`removedShares`) burned as POD or sent to the slash recipient, by governance choice.
    event Slashed(
        address indexed account,
        uint256 shares,
        address indexed reporter,
        uint256 reporterShares,
        uint256 removedShares
    );

    /// @notice Governance set the thaw period for new unbond requests.
    event ThawPeriodSet(uint256 thawPeriod);

    /// @notice Governance set the POD-worth of active bond a validator needs.
    event MinValidatorBondSet(uint256 minValidatorBond);

    /// @notice Governance set where slashed stake goes (the zero address: it is redeemed and burned).
    event SlashRecipientSet(address recipient);

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

    /// @notice Opts the caller in to validating; reverts unless its active bond is worth {minValidatorBond}.
    function joinValidators() external;

    /// @notice Opts the caller out of validating.
    function leaveValidators() external;

    /// @notice Recomputes the validator weight of `account` from its current bond value; anyone may call it
    /// (weights otherwise refresh only when the account's bond changes).
    function refreshValidator(address account) external;

    /// @notice Slashes `shares` from `account`, active bond first, then thawing; `reporterBps` of them go to
    /// `reporter` (bonded to it if it is a validator, else paid in stkPOD), none if `reporter` is zero.
    /// Only the slasher role (the Slashing contract).
    function slash(address account, uint256 shares, address reporter, uint256 reporterBps) external;

    /// @notice The next NodeBinding nonce of `operator`.
    function nonces(address operator) external view returns (uint256);

    /// @notice Whether `operator` registered the node whose peer id hashes to `peerIdHash`.
    function isNodeOf(address operator, bytes32 peerIdHash) external view returns (bool);

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

    /// @notice Whether `account` currently has validator weight.
    function isValidator(address account) external view returns (bool);

    /// @notice The validator weight of `account`: its active bond shares while it has joined and its bond is
    /// worth at least {minValidatorBond}, else 0.
    function validatorWeight(address account) external view returns (uint256);

    /// @notice Sum of all validator weights, read in O(1).
    function totalValidatorWeight() external view returns (uint256);

    /// @notice What a request holds now: its account, when it unlocks, and its shares after slashes.
    function unbondRequest(uint256 requestId)
        external
        view
        returns (address account, uint256 unlockTime, uint256 shares);

    /// @notice The stkPOD vault whose shares are bonded.
    function vault() external view returns (address);

    /// @notice The thaw period applied to new unbond requests.
    function thawPeriod() external view returns (uint256);

    /// @notice POD-worth of active bond needed to be a validator (100,000 POD at launch).
    function minValidatorBond() external view returns (uint256);

    /// @notice Where slashed stake goes; the zero address means it is redeemed and the POD burned.
    function slashRecipient() external view returns (address);
}
