// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IBonding} from "../interfaces/IBonding.sol";
import {IValidatorQuorum} from "../interfaces/IValidatorQuorum.sol";

/**
 * @title Slashing, executes strike decisions signed by a validator quorum
 * @notice Validators who confirm a node cheated sign an EIP-712 `StrikeDecision` (domain "Dolphin Network",
 * version "1", this contract). Anyone may submit it with the signatures, sorted by signer address; once a
 * quorum of the elected validator set has signed — the offender's own weight left out of both the total
 * and the signers, so a validator can neither judge nor veto its own case — {Bonding} slashes `slashBps`
 * of the offender's slashable bond (active and thawing), pays {reporterRewardBps} of it to the reporter
 * (bonded, when the reporter is a validator) and burns the rest. Each evidence hash slashes a given
 * offender at most once, no decision takes more than {maxSlashBps}, and a decision's signatures live at
 * most {MAX_DECISION_TTL}: a quorum cannot sign decisions to hold back and play later. Validators sign
 * decisions for {slashBps}, the one share governance sets for all of them: with a share of their own
 * they would sign different decisions (no quorum) and pay different awards out of what a slash leaves.
 *
 * It is also the one home of the strike rules every validator and router applies to a ban ({strikeRules}:
 * each reason's severity, the points and distinct validators a ban needs within a window of epochs) and of
 * the awards for catching a node, so that no local configuration can make one peer ban or pay where
 * another would not (docs/rewards.md, "Strikes, bans and awards").
 */
contract Slashing is AccessControl, EIP712 {
    /// @notice May set the bounded parameters: the timelock.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");

    bytes32 public constant STRIKE_DECISION_TYPEHASH = keccak256(
        "StrikeDecision(address offender,bytes32 evidenceHash,uint256 slashBps,address reporter,uint256 deadline)"
    );

    uint256 public constant MAX_SLASH_BPS_CEILING = 10_000;
    uint256 public constant MAX_REPORTER_REWARD_BPS = 5_000;
    /// @notice The furthest a decision's deadline may lie ahead of its execution.
    uint256 public constant MAX_DECISION_TTL = 7 days;
    uint256 private constant BPS = 10_000;
    /// @notice Bounds of the strike rules: a severity, the ban threshold, the window, one award.
    uint256 public constant MAX_SEVERITY = 10; // as a StrikeReport states it
    uint256 public constant MAX_BAN_POINTS = 1_000;
    uint256 public constant MIN_BAN_VALIDATORS = 2;
    uint256 public constant MAX_BAN_VALIDATORS = 100;
    /// @notice The strike window, in epochs: with daily epochs, window + MAX_DECISION_TTL stays within
    /// Bonding.UNBOUND_SLASHABLE_PERIOD (30 days).
    uint256 public constant MAX_WINDOW_EPOCHS = 23;
    uint256 public constant MAX_AWARD = 10_000 * 1e18;

    /// @notice The message validators sign; field order and types are the EIP-712 type string's.
    struct StrikeDecision {
        address offender;
        bytes32 evidenceHash;
        uint256 slashBps;
        address reporter;
        uint256 deadline;
    }

    IBonding private immutable _bonding;
    IValidatorQuorum private immutable _quorum;
    uint256 private _maxSlashBps = 5_000;
    uint256 private _reporterRewardBps = 1_000;
    uint256 private _slashBps = 5_000;
    mapping(address offender => mapping(bytes32 evidenceHash => bool)) private _evidenceUsed;

    /// @dev The strike reasons, in the protocol's order, and each one's severity in points.
    string[] private _reasons;
    uint256[] private _severities;
    uint256 private _banPoints = 12;
    uint256 private _banValidators = 2;
    uint256 private _windowEpochs = 7;
    uint256 private _validatorAward = 100 * 1e18;
    uint256 private _userAward = 50 * 1e18;

    /// @notice `offender` lost `shares` stkPOD for `evidenceHash`; `reporter` received `reporterShares`.
    event StrikeExecuted(
        address indexed offender,
        bytes32 indexed evidenceHash,
        uint256 shares,
        address indexed reporter,
        uint256 reporterShares
    );
    /// @notice Governance set the largest fraction one decision may slash.
    event MaxSlashBpsSet(uint256 maxSlashBps);
    /// @notice Governance set the share validators' decisions slash.
    event SlashBpsSet(uint256 slashBps);
    /// @notice Governance set the reporter's cut of a slash.
    event ReporterRewardBpsSet(uint256 reporterRewardBps);
    /// @notice Governance set the strike rules.
    event StrikeRulesSet(
        uint256[] severities,
        uint256 banPoints,
        uint256 banValidators,
        uint256 windowEpochs,
        uint256 validatorAward,
        uint256 userAward
    );

    /// @dev The decision expired at `deadline`.
    error SlashingDecisionExpired(uint256 deadline);
    /// @dev The decision's `deadline` lies more than MAX_DECISION_TTL ahead (at most `maxDeadline` now).
    error SlashingDeadlineTooFar(uint256 deadline, uint256 maxDeadline);
    /// @dev `evidenceHash` has already slashed `offender`.
    error SlashingEvidenceAlreadyUsed(address offender, bytes32 evidenceHash);
    /// @dev `slashBps` is 0 or above the current `maxSlashBps`.
    error SlashingBpsOutOfBounds(uint256 slashBps, uint256 maxSlashBps);
    /// @dev The offender cannot report itself and collect the reporter's cut of its own slash.
    error SlashingReporterIsOffender(address offender);
    /// @dev `offender` has nothing slashable (or `slashBps` of it rounds to zero).
    error SlashingNothingToSlash(address offender);
    /// @dev Governance asked for `value`, outside [`min`, `max`].
    error SlashingParameterOutOfBounds(uint256 value, uint256 min, uint256 max);
    /// @dev A severity list of `given` entries, not one per reason (`expected`).
    error SlashingSeveritiesLength(uint256 given, uint256 expected);

    /**
     * @param bonding_ the bonds to slash (which must have bound this contract as its slasher)
     * @param quorum_ the validator quorum check
     * @param admin receives DEFAULT_ADMIN_ROLE and PARAMETERS_ROLE (the timelock)
     */
    constructor(IBonding bonding_, IValidatorQuorum quorum_, address admin) EIP712("Dolphin Network", "1") {
        _bonding = bonding_;
        _quorum = quorum_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PARAMETERS_ROLE, admin);
        // protocols.messages.STRIKE_REASONS, in its order; severities are docs/rewards.md's defaults.
        _defineReason("wrong_model", 8);
        _defineReason("tokenizer_mismatch", 7);
        _defineReason("too_slow", 3);
        _defineReason("too_fast", 5);
        _defineReason("bad_receipt", 7);
        _defineReason("unavailable", 1);
        _defineReason("fabricated_output", 9);
        _defineReason("user_report", 4);
        _defineReason("false_benchmark", 6);
    }

    /**
     * @notice Executes `decision` if a quorum of the validator set, the offender left out, signed it.
     * @param signatures 65-byte ECDSA signatures of {hashStrikeDecision}, ordered by ascending signer address
     * @return shares the stkPOD shares slashed
     */
    function slash(StrikeDecision calldata decision, bytes[] calldata signatures) external returns (uint256 shares) {
        if (block.timestamp > decision.deadline) revert SlashingDecisionExpired(decision.deadline);
        if (decision.deadline > block.timestamp + MAX_DECISION_TTL) {
            revert SlashingDeadlineTooFar(decision.deadline, block.timestamp + MAX_DECISION_TTL);
        }
        if (_evidenceUsed[decision.offender][decision.evidenceHash]) {
            revert SlashingEvidenceAlreadyUsed(decision.offender, decision.evidenceHash);
        }
        if (decision.slashBps == 0 || decision.slashBps > _maxSlashBps) {
            revert SlashingBpsOutOfBounds(decision.slashBps, _maxSlashBps);
        }
        if (decision.reporter == decision.offender) revert SlashingReporterIsOffender(decision.offender);
        _quorum.checkQuorumExcluding(hashStrikeDecision(decision), signatures, decision.offender);

        shares = Math.mulDiv(_bonding.slashableOf(decision.offender), decision.slashBps, BPS);
        if (shares == 0) revert SlashingNothingToSlash(decision.offender);

        // Marked before the call out (checks-effects-interactions): the evidence is spent even if Bonding
        // were ever to call back.
        _evidenceUsed[decision.offender][decision.evidenceHash] = true;
        uint256 reporterBps = decision.reporter == address(0) ? 0 : _reporterRewardBps;
        uint256 reporterShares = Math.mulDiv(shares, reporterBps, BPS);
        emit StrikeExecuted(decision.offender, decision.evidenceHash, shares, decision.reporter, reporterShares);
        // The whitepaper rewards validators in bonded POD: a reporter in the current set is paid that way.
        bool bondReporterCut = _quorum.isValidator(decision.reporter);
        _bonding.slash(decision.offender, shares, decision.reporter, reporterBps, bondReporterCut);
    }

    /// @notice The EIP-712 digest validators sign for `decision`.
    function hashStrikeDecision(StrikeDecision calldata decision) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    STRIKE_DECISION_TYPEHASH,
                    decision.offender,
                    decision.evidenceHash,
                    decision.slashBps,
                    decision.reporter,
                    decision.deadline
                )
            )
        );
    }

    /// @notice Whether `evidenceHash` has slashed `offender` already.
    function isEvidenceUsed(address offender, bytes32 evidenceHash) external view returns (bool) {
        return _evidenceUsed[offender][evidenceHash];
    }

    /// @notice The largest fraction of the slashable bond one decision may take, in basis points.
    function maxSlashBps() external view returns (uint256) {
        return _maxSlashBps;
    }

    /// @notice The share of the slashable bond validators' decisions take, in basis points: what governance
    /// set, capped by {maxSlashBps}.
    function slashBps() external view returns (uint256) {
        return Math.min(_slashBps, _maxSlashBps);
    }

    /// @notice The reporter's cut of each slash, in basis points.
    function reporterRewardBps() external view returns (uint256) {
        return _reporterRewardBps;
    }

    /// @notice The bonding contract this slashes.
    function bonding() external view returns (address) {
        return address(_bonding);
    }

    /// @notice The quorum check this relies on.
    function quorum() external view returns (address) {
        return address(_quorum);
    }

    /**
     * @notice The strike rules: `reasons` and their `severities` (points), the `banPoints` a ban needs from
     * strikes of at least `banValidators` distinct validators (each counted once, at its most severe) within
     * `windowEpochs` epochs, and the most the node rewards pool pays a validator and a user for catching a
     * node (never more than the node forfeits, docs/rewards.md).
     */
    function strikeRules()
        external
        view
        returns (
            string[] memory reasons,
            uint256[] memory severities,
            uint256 banPoints,
            uint256 banValidators,
            uint256 windowEpochs,
            uint256 validatorAward,
            uint256 userAward
        )
    {
        return (_reasons, _severities, _banPoints, _banValidators, _windowEpochs, _validatorAward, _userAward);
    }

    /// @notice Sets the strike rules (see {strikeRules}), each within its fixed bounds.
    function setStrikeRules(
        uint256[] calldata severities,
        uint256 banPoints,
        uint256 banValidators,
        uint256 windowEpochs,
        uint256 validatorAward,
        uint256 userAward
    ) external onlyRole(PARAMETERS_ROLE) {
        if (severities.length != _reasons.length) revert SlashingSeveritiesLength(severities.length, _reasons.length);
        for (uint256 i = 0; i < severities.length; ++i) {
            _checkBounds(severities[i], 1, MAX_SEVERITY);
        }
        _checkBounds(banPoints, 1, MAX_BAN_POINTS);
        _checkBounds(banValidators, MIN_BAN_VALIDATORS, MAX_BAN_VALIDATORS);
        _checkBounds(windowEpochs, 1, MAX_WINDOW_EPOCHS);
        _checkBounds(validatorAward, 0, MAX_AWARD);
        _checkBounds(userAward, 0, MAX_AWARD);
        _severities = severities;
        _banPoints = banPoints;
        _banValidators = banValidators;
        _windowEpochs = windowEpochs;
        _validatorAward = validatorAward;
        _userAward = userAward;
        emit StrikeRulesSet(severities, banPoints, banValidators, windowEpochs, validatorAward, userAward);
    }

    /// @notice Sets the largest fraction one decision may slash, within [1, MAX_SLASH_BPS_CEILING].
    function setMaxSlashBps(uint256 bps) external onlyRole(PARAMETERS_ROLE) {
        if (bps == 0 || bps > MAX_SLASH_BPS_CEILING) revert SlashingParameterOutOfBounds(bps, 1, MAX_SLASH_BPS_CEILING);
        _maxSlashBps = bps;
        emit MaxSlashBpsSet(bps);
    }

    /// @notice Sets the share validators' decisions take, within [1, MAX_SLASH_BPS_CEILING] (capped by
    /// {maxSlashBps} when read).
    function setSlashBps(uint256 bps) external onlyRole(PARAMETERS_ROLE) {
        if (bps == 0 || bps > MAX_SLASH_BPS_CEILING) revert SlashingParameterOutOfBounds(bps, 1, MAX_SLASH_BPS_CEILING);
        _slashBps = bps;
        emit SlashBpsSet(bps);
    }

    /// @notice Sets the reporter's cut, within [0, MAX_REPORTER_REWARD_BPS].
    function setReporterRewardBps(uint256 bps) external onlyRole(PARAMETERS_ROLE) {
        if (bps > MAX_REPORTER_REWARD_BPS) revert SlashingParameterOutOfBounds(bps, 0, MAX_REPORTER_REWARD_BPS);
        _reporterRewardBps = bps;
        emit ReporterRewardBpsSet(bps);
    }

    function _defineReason(string memory reason, uint256 severity) private {
        _reasons.push(reason);
        _severities.push(severity);
    }

    function _checkBounds(uint256 value, uint256 min, uint256 max) private pure {
        if (value < min || value > max) revert SlashingParameterOutOfBounds(value, min, max);
    }
}
