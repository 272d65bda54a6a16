// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IBonding} from "../interfaces/IBonding.sol";
import {IParamsRegistry} from "../interfaces/IParamsRegistry.sol";
import {IValidatorQuorum} from "../interfaces/IValidatorQuorum.sol";

/**
 * @title ValidatorQuorum, the elected validator set and its quorum check
 * @notice See {IValidatorQuorum}. How the set changes, and why it is safe:
 *
 * - Elected, not live. The set and its weights are stored here and change only at an epoch boundary:
 *   the validators sign each epoch's rewards root together with the *next* set (RewardsDistributor's
 *   `EpochRoot` carries `validators` and `weights`), and activating that root, after the root delay in
 *   which a revoker can stop it, installs the set here. Bonding more, or opting in, moves no weight until
 *   an election includes the account, so nobody can buy the quorum within a block.
 * - Elected by whom. The settlers run the reward spec's election off chain (an account is eligible with
 *   at least `validator_min_bond` POD of active bond and 13 weeks of earnings bonded to enter, 10 to
 *   stay; weight = its active bond shares at the epoch snapshot). What the chain can check it checks at
 *   installation: each member opted in ({joinValidators}) and holds an active bond worth at least
 *   `validator_min_bond` (read from the ParamsRegistry, its one home) now, and no weight exceeds the
 *   member's active bond shares now (a larger one is capped). A member failing a check is dropped rather
 *   than failing the activation, so no elected member can hold a root hostage by unbonding. A quorum
 *   therefore cannot install strangers, only opted-in accounts that put the minimum at stake.
 * - Genesis. A new network has no earnings history, so nobody is eligible yet: the deployment names a
 *   genesis set (constructor), installed without bond checks. Each root re-signs a set: until the
 *   election elects anyone the settlers carry the current set forward, and from then on the elected set
 *   replaces it. A carried genesis member must then pass the same installation checks as anyone else.
 * - Snapshotted weights are safe because a member's stake stays slashable for the whole thaw period
 *   (at least 30 days), far longer than one epoch, so a member that unbonds stays at risk for as long as
 *   its weight counts; its weight is gone at the next installation.
 * - A new set waits before it moves money. For SET_CHANGE_WAIT after an installation, a quorum checked for
 *   anyone but the installer (Credits' debits, Slashing's slashes) counts each signer's weight only up to
 *   what it held in the set before (`heldWeight`): weight a member gained, and a newcomer's whole weight,
 *   count only once the wait is over, so a set that took over cannot debit or slash at once, while the
 *   incumbents keep doing both. Roots (the installer's check) are not held up: they carry the next set.
 * - Quorum. `signed * denominator >= total * numerator`: with the launch value 2/3, two of three equal
 *   members are a quorum (a rounded-up basis-point rule would need all three). A decision about a member
 *   (a slash) leaves its weight out of both sides ({checkQuorumExcluding}).
 * - Signers are listed in strictly ascending address order, the Gnosis Safe convention: one comparison per
 *   signature proves they are distinct, with no storage and no sorting on chain.
 */
contract ValidatorQuorum is IValidatorQuorum, AccessControl {
    /// @notice May set the quorum fraction: the timelock.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");

    /// @inheritdoc IValidatorQuorum
    uint256 public constant MAX_VALIDATORS = 100;
    /// @notice How long a newly installed set's new weight waits before it counts for debits and slashes.
    uint256 public constant SET_CHANGE_WAIT = 2 days;
    /// @notice Bounds the quorum fraction's denominator (basis-point precision is plenty).
    uint256 public constant MAX_QUORUM_DENOMINATOR = 10_000;

    string private constant _MIN_BOND_PARAM = "validator_min_bond";

    IBonding private immutable _bonding;
    IParamsRegistry private immutable _params;
    /// @dev The deploying account: it alone binds the installer, once.
    address private immutable _binder;

    address private _installer;
    uint256 private _quorumNumerator;
    uint256 private _quorumDenominator;

    address[] private _members;
    mapping(address account => uint256) private _weights;
    uint256 private _totalWeight;
    uint256 private _setEpoch;
    /// @dev Per member, the weight that counts during the wait: the lesser of its weight now and before.
    mapping(address account => uint256) private _heldWeights;
    uint256 private _installedAt;

    mapping(address account => bool) private _joined;

    /// @dev The current set has no weight left to decide with (after leaving out the one judged).
    error ValidatorQuorumNoValidators();
    /// @dev `signer` is not above the previous signer: the list is unsorted or repeats someone.
    error ValidatorQuorumSignersNotAscending(address signer);
    /// @dev The signers hold `signedWeight`, short of the `requiredWeight`.
    error ValidatorQuorumNotReached(uint256 signedWeight, uint256 requiredWeight);
    /// @dev A quorum fraction that is not above one half and at most one, or has a denominator above the cap.
    error ValidatorQuorumInvalidQuorum(uint256 numerator, uint256 denominator);
    /// @dev A set with `members` addresses and `weights` weights: unequal, empty or above MAX_VALIDATORS.
    error ValidatorQuorumInvalidSetSize(uint256 members, uint256 weights);
    /// @dev `member` is not above the previous member: a set lists distinct addresses in ascending order.
    error ValidatorQuorumSetNotAscending(address member);
    /// @dev `member` was given a zero weight.
    error ValidatorQuorumZeroWeight(address member);
    /// @dev None of the members named for `epoch` passed the installation checks.
    error ValidatorQuorumNoEligibleMember(uint256 epoch);
    /// @dev Only the installer (the RewardsDistributor) installs sets; `caller` is not it.
    error ValidatorQuorumUnauthorizedInstaller(address caller);
    /// @dev Only the deploying account binds the installer, and only once.
    error ValidatorQuorumInstallerNotBindable(address caller);
    /// @dev The active bond of `account` is worth `value` POD, under the validator minimum `minimum`.
    error ValidatorQuorumBelowMinimumBond(address account, uint256 value, uint256 minimum);
    /// @dev `account` is already in the state (`joined`) it asked for.
    error ValidatorQuorumMembershipUnchanged(address account, bool joined);

    /**
     * @param bonding_ whose active bonds back the weights
     * @param params_ the ParamsRegistry holding `validator_min_bond`
     * @param admin receives DEFAULT_ADMIN_ROLE and PARAMETERS_ROLE (the timelock)
     * @param quorumNumerator_ with `quorumDenominator_`, the quorum fraction (2 and 3 at launch)
     * @param genesisMembers the genesis set, ascending by address (installed without bond checks)
     * @param genesisWeights their weights (equal weights: one validator, one vote)
     */
    constructor(
        IBonding bonding_,
        IParamsRegistry params_,
        address admin,
        uint256 quorumNumerator_,
        uint256 quorumDenominator_,
        address[] memory genesisMembers,
        uint256[] memory genesisWeights
    ) {
        _bonding = bonding_;
        _params = params_;
        _binder = msg.sender;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PARAMETERS_ROLE, admin);
        _setQuorum(quorumNumerator_, quorumDenominator_);
        _checkSetShape(genesisMembers, genesisWeights);
        _install(0, genesisMembers, genesisWeights, false);
    }

    // ---------------------------------------------------------------- quorum

    /// @inheritdoc IValidatorQuorum
    function checkQuorum(bytes32 digest, bytes[] calldata signatures) external view returns (uint256 signedWeight) {
        return _checkQuorum(digest, signatures, address(0));
    }

    /// @inheritdoc IValidatorQuorum
    function checkQuorumExcluding(bytes32 digest, bytes[] calldata signatures, address excluded)
        external
        view
        returns (uint256 signedWeight)
    {
        return _checkQuorum(digest, signatures, excluded);
    }

    // ---------------------------------------------------------------- the set

    /// @inheritdoc IValidatorQuorum
    function checkValidatorSet(address[] calldata members, uint256[] calldata weights) external pure {
        _checkSetShape(members, weights);
    }

    /// @inheritdoc IValidatorQuorum
    function installValidatorSet(uint256 epoch, address[] calldata members, uint256[] calldata weights) external {
        if (_msgSender() != _installer) revert ValidatorQuorumUnauthorizedInstaller(_msgSender());
        _checkSetShape(members, weights);
        _install(epoch, members, weights, true);
    }

    /**
     * @notice Names the one account that installs elected sets (the RewardsDistributor, deployed after this
     * contract). Only the deploying account, only once: afterwards nobody, governance included, can install
     * a set other than through a quorum-signed, delay-guarded epoch root.
     */
    function bindInstaller(address installer_) external {
        if (_msgSender() != _binder || _installer != address(0) || installer_ == address(0)) {
            revert ValidatorQuorumInstallerNotBindable(_msgSender());
        }
        _installer = installer_;
        emit InstallerBound(installer_);
    }

    /// @inheritdoc IValidatorQuorum
    function joinValidators() external {
        address account = _msgSender();
        if (_joined[account]) revert ValidatorQuorumMembershipUnchanged(account, true);
        uint256 value = _bonding.bondValueInPOD(account);
        uint256 minimum = minValidatorBond();
        if (value < minimum) revert ValidatorQuorumBelowMinimumBond(account, value, minimum);
        _joined[account] = true;
        emit ValidatorMembershipChanged(account, true);
    }

    /// @inheritdoc IValidatorQuorum
    function leaveValidators() external {
        address account = _msgSender();
        if (!_joined[account]) revert ValidatorQuorumMembershipUnchanged(account, false);
        _joined[account] = false;
        emit ValidatorMembershipChanged(account, false);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Sets the quorum fraction: above one half (two disjoint signer sets can never both reach it),
    /// at most one, denominator at most MAX_QUORUM_DENOMINATOR.
    function setQuorum(uint256 numerator, uint256 denominator) external onlyRole(PARAMETERS_ROLE) {
        _setQuorum(numerator, denominator);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IValidatorQuorum
    function validators() external view returns (address[] memory members, uint256[] memory weights) {
        members = _members;
        weights = new uint256[](members.length);
        for (uint256 i = 0; i < members.length; ++i) {
            weights[i] = _weights[members[i]];
        }
    }

    /// @inheritdoc IValidatorQuorum
    function validatorSetEpoch() external view returns (uint256) {
        return _setEpoch;
    }

    /// @inheritdoc IValidatorQuorum
    function weightOf(address account) external view returns (uint256) {
        return _weights[account];
    }

    /// @notice The weight of `account` that counts for debits and slashes until `waitEndsAt()`.
    function heldWeightOf(address account) external view returns (uint256) {
        return _heldWeights[account];
    }

    /// @notice When the current set's new weight starts counting for debits and slashes.
    function waitEndsAt() external view returns (uint256) {
        return _installedAt + SET_CHANGE_WAIT;
    }

    /// @inheritdoc IValidatorQuorum
    function totalWeight() external view returns (uint256) {
        return _totalWeight;
    }

    /// @inheritdoc IValidatorQuorum
    function isValidator(address account) external view returns (bool) {
        return _weights[account] != 0;
    }

    /// @inheritdoc IValidatorQuorum
    function hasJoined(address account) external view returns (bool) {
        return _joined[account];
    }

    /// @inheritdoc IValidatorQuorum
    function quorum() external view returns (uint256 numerator, uint256 denominator) {
        return (_quorumNumerator, _quorumDenominator);
    }

    /// @inheritdoc IValidatorQuorum
    function requiredWeight() external view returns (uint256) {
        return _requiredWeight(_totalWeight);
    }

    /// @inheritdoc IValidatorQuorum
    function minValidatorBond() public view returns (uint256) {
        return _params.valueOf(_MIN_BOND_PARAM);
    }

    /// @inheritdoc IValidatorQuorum
    function bonding() external view returns (address) {
        return address(_bonding);
    }

    /// @inheritdoc IValidatorQuorum
    function params() external view returns (address) {
        return address(_params);
    }

    /// @inheritdoc IValidatorQuorum
    function installer() external view returns (address) {
        return _installer;
    }

    // ---------------------------------------------------------------- internals

    function _checkQuorum(bytes32 digest, bytes[] calldata signatures, address excluded)
        private
        view
        returns (uint256 signedWeight)
    {
        // Members are non-zero addresses, so excluding address(0) leaves the total as it is.
        uint256 total = _totalWeight - _weights[excluded];
        if (total == 0) revert ValidatorQuorumNoValidators();
        bool waiting = msg.sender != _installer && block.timestamp < _installedAt + SET_CHANGE_WAIT;
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            // recoverCalldata rejects malformed signatures and high-s (malleable) ones.
            address signer = ECDSA.recoverCalldata(digest, signatures[i]);
            if (signer <= previous) revert ValidatorQuorumSignersNotAscending(signer);
            previous = signer;
            // A stranger (or a member since replaced) weighs nothing; the others' signatures still count.
            if (signer != excluded) signedWeight += waiting ? _heldWeights[signer] : _weights[signer];
        }
        uint256 required = _requiredWeight(total);
        if (signedWeight < required) revert ValidatorQuorumNotReached(signedWeight, required);
    }

    /// @dev ceil(total * numerator / denominator): the least `signed` with signed * den >= total * num.
    function _requiredWeight(uint256 total) private view returns (uint256) {
        return Math.mulDiv(total, _quorumNumerator, _quorumDenominator, Math.Rounding.Ceil);
    }

    function _checkSetShape(address[] memory members, uint256[] memory weights) private pure {
        if (members.length != weights.length || members.length == 0 || members.length > MAX_VALIDATORS) {
            revert ValidatorQuorumInvalidSetSize(members.length, weights.length);
        }
        address previous = address(0);
        for (uint256 i = 0; i < members.length; ++i) {
            if (members[i] <= previous) revert ValidatorQuorumSetNotAscending(members[i]);
            previous = members[i];
            if (weights[i] == 0) revert ValidatorQuorumZeroWeight(members[i]);
        }
    }

    /// @dev Replaces the set; with `checkEligibility`, drops ineligible members and caps weights by bonds.
    function _install(uint256 epoch, address[] memory members, uint256[] memory weights, bool checkEligibility)
        private
    {
        uint256 minimum = checkEligibility ? minValidatorBond() : 0;
        address[] storage current = _members;
        uint256[] memory before = new uint256[](members.length);
        for (uint256 i = 0; i < members.length; ++i) {
            before[i] = _weights[members[i]];
        }
        for (uint256 i = 0; i < current.length; ++i) {
            delete _weights[current[i]];
            delete _heldWeights[current[i]];
        }
        delete _members;

        uint256 total = 0;
        for (uint256 i = 0; i < members.length; ++i) {
            address member = members[i];
            uint256 weight = weights[i];
            if (checkEligibility) {
                weight = _eligibleWeight(member, weight, minimum);
                if (weight == 0) {
                    emit ValidatorDropped(epoch, member);
                    continue;
                }
            }
            current.push(member);
            _weights[member] = weight;
            // The genesis set is trusted from the start: nothing came before it.
            _heldWeights[member] = checkEligibility ? Math.min(weight, before[i]) : weight;
            total += weight;
        }
        if (total == 0) revert ValidatorQuorumNoEligibleMember(epoch);
        _totalWeight = total;
        _setEpoch = epoch;
        _installedAt = block.timestamp;
        emit ValidatorSetInstalled(epoch, current.length, total);
    }

    /// @dev `weight` capped by the member's active bond, or 0 when it has not joined or is under the minimum.
    function _eligibleWeight(address member, uint256 weight, uint256 minimum) private view returns (uint256) {
        if (!_joined[member] || _bonding.bondValueInPOD(member) < minimum) return 0;
        return Math.min(weight, _bonding.activeBondOf(member));
    }

    function _setQuorum(uint256 numerator, uint256 denominator) private {
        if (
            denominator == 0 || denominator > MAX_QUORUM_DENOMINATOR || numerator > denominator
                || 2 * numerator <= denominator
        ) revert ValidatorQuorumInvalidQuorum(numerator, denominator);
        _quorumNumerator = numerator;
        _quorumDenominator = denominator;
        emit QuorumSet(numerator, denominator);
    }
}
