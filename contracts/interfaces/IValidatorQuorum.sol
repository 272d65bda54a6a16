// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IValidatorQuorum, the elected validator set and its "enough of them signed this" check
 * @notice Slashing, Credits and RewardsDistributor each build their own EIP-712 digest (domain "Dolphin
 * Network", version "1", verifyingContract = themselves) and ask this contract whether members of the
 * current validator set holding at least {quorum} of its weight signed it.
 *
 * The set is *elected*, not live: it changes only when an epoch's rewards root is activated, which installs
 * the next set that root's signers committed to (weights snapshotted at installation, each capped by the
 * member's active bond). The deployment names the genesis set that the first elected set replaces.
 */
interface IValidatorQuorum {
    /// @notice Governance set the fraction of the set's weight a quorum needs.
    event QuorumSet(uint256 numerator, uint256 denominator);

    /// @notice The account that may install elected sets (the RewardsDistributor) was bound, once.
    event InstallerBound(address installer);

    /// @notice The validator set of `epoch` (0: the genesis set) replaced the previous one.
    event ValidatorSetInstalled(uint256 indexed epoch, uint256 size, uint256 totalWeight);

    /// @notice `member` was named in the set of `epoch` but was left out: it had not joined, or its active
    /// bond was worth less than the validator minimum when the set was installed.
    event ValidatorDropped(uint256 indexed epoch, address indexed member);

    /// @notice `account` opted in to (`joined` true) or out of being elected.
    event ValidatorMembershipChanged(address indexed account, bool joined);

    /**
     * @notice Returns the summed weight of the current set's members among the signers of `digest`.
     * @dev Reverts unless every signature recovers (ECDSA, no malleable `s`), the signers are strictly
     * ascending by address (so none counts twice) and their weight reaches the quorum:
     * `signed * denominator >= total * numerator`. A signer outside the current set (one that left it when
     * a new set was installed) adds nothing but does not revert the bundle. For SET_CHANGE_WAIT after an
     * installation, a caller other than the installer counts each signer's weight only up to what it held
     * in the set before (a new set cannot debit or slash at once).
     */
    function checkQuorum(bytes32 digest, bytes[] calldata signatures) external view returns (uint256 signedWeight);

    /**
     * @notice {checkQuorum} for a decision about `excluded` (a slashing offender): its weight counts neither
     * in the total nor among the signers, so a member can neither judge itself nor veto its own slash.
     */
    function checkQuorumExcluding(bytes32 digest, bytes[] calldata signatures, address excluded)
        external
        view
        returns (uint256 signedWeight);

    /**
     * @notice Reverts unless `members` and `weights` have the shape of a validator set: equal lengths,
     * 1 to {MAX_VALIDATORS} members, addresses strictly ascending (so distinct and non-zero), weights
     * positive. What a settler signs as the next set must pass this (RewardsDistributor checks it on
     * proposal); eligibility is checked when the set is installed.
     */
    function checkValidatorSet(address[] calldata members, uint256[] calldata weights) external view;

    /**
     * @notice Replaces the current set with the one the root of `epoch` committed to. Only the installer.
     * Each member must have joined and hold an active bond worth at least {minValidatorBond} POD, else it is
     * dropped ({ValidatorDropped}); each weight is capped by the member's active bond shares. Reverts if
     * nobody is left.
     */
    function installValidatorSet(uint256 epoch, address[] calldata members, uint256[] calldata weights) external;

    /// @notice Opts the caller in to being elected; reverts unless its active bond is worth the minimum.
    function joinValidators() external;

    /// @notice Opts the caller out of being elected (it stays in the current set until the next one).
    function leaveValidators() external;

    /// @notice The current set: members ascending by address and their weights (stkPOD shares).
    function validators() external view returns (address[] memory members, uint256[] memory weights);

    /// @notice The rewards epoch whose root installed the current set (0 for the genesis set).
    function validatorSetEpoch() external view returns (uint256);

    /// @notice The weight of `account` in the current set (0 when it is not a member).
    function weightOf(address account) external view returns (uint256);

    /// @notice The summed weight of the current set.
    function totalWeight() external view returns (uint256);

    /// @notice Whether `account` is a member of the current set.
    function isValidator(address account) external view returns (bool);

    /// @notice Whether `account` opted in to being elected.
    function hasJoined(address account) external view returns (bool);

    /// @notice The quorum as a fraction of the set's weight (2/3 at launch).
    function quorum() external view returns (uint256 numerator, uint256 denominator);

    /// @notice The least signed weight that reaches the quorum of the current set.
    function requiredWeight() external view returns (uint256);

    /// @notice POD-worth of active bond a member needs: `validator_min_bond` of the ParamsRegistry.
    function minValidatorBond() external view returns (uint256);

    /// @notice The most members a set may have.
    // solhint-disable-next-line func-name-mixedcase
    function MAX_VALIDATORS() external view returns (uint256);

    /// @notice The bonding contract whose bonds back the weights.
    function bonding() external view returns (address);

    /// @notice The parameter registry holding `validator_min_bond`.
    function params() external view returns (address);

    /// @notice The account that installs elected sets (the RewardsDistributor); zero until bound.
    function installer() external view returns (address);
}
