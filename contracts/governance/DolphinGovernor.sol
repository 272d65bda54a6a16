// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {GovernorCountingSimple} from "@openzeppelin/contracts/governance/extensions/GovernorCountingSimple.sol";
import {GovernorSettings} from "@openzeppelin/contracts/governance/extensions/GovernorSettings.sol";
import {GovernorTimelockControl} from "@openzeppelin/contracts/governance/extensions/GovernorTimelockControl.sol";
import {GovernorVotes} from "@openzeppelin/contracts/governance/extensions/GovernorVotes.sol";
import {GovernorVotesQuorumFraction} from
    "@openzeppelin/contracts/governance/extensions/GovernorVotesQuorumFraction.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {IBonding} from "../interfaces/IBonding.sol";

/**
 * @title DolphinGovernor, token voting by POD, staked POD and bonded POD
 * @notice OpenZeppelin's Governor assembled from its stock modules: simple for/against/abstain counting, a
 * quorum fraction of POD's past total supply, and execution through the DolphinTimelock, which owns every
 * parameter. Every clock is the timestamp, so every period below is in seconds. Ours:
 *
 * - Votes. An account's votes at a proposal's snapshot are its POD delegations, plus its stkPOD
 *   delegations and its own active bond (Bonding's checkpoints, not delegable) valued in POD at the
 *   vault's share price when the vote is cast (as Aave counts stkAAVE): staking for buybacks or bonding
 *   to operate does not cost anyone their voice. Most of a young network's POD sits where it cannot
 *   vote (the timelock's treasury, the rewards pool, the pair), and what does circulate would otherwise
 *   move into the vault and bonds as the network works.
 * - Quorum in basis points of POD's supply, so it can be sized to what can vote: the deployment sets it
 *   (0.5% by default, reachable by the demo distribution), and governance raises it, within bounds, as
 *   the treasury and the rewards pool distribute.
 * - Bounds on the Governor's own setters.
 */
contract DolphinGovernor is
    Governor,
    GovernorSettings,
    GovernorCountingSimple,
    GovernorVotes,
    GovernorVotesQuorumFraction,
    GovernorTimelockControl
{
    uint48 public constant MAX_VOTING_DELAY = 30 days;
    uint32 public constant MIN_VOTING_PERIOD = 1 days;
    uint32 public constant MAX_VOTING_PERIOD = 30 days;
    /// @dev Out of POD's fixed supply of 1e9 POD: at most 1% needed to propose.
    uint256 public constant MAX_PROPOSAL_THRESHOLD = 10_000_000e18;
    /// @dev Quorum bounds in basis points of POD's supply: 0.1% to 50%.
    uint256 public constant MIN_QUORUM_BPS = 10;
    uint256 public constant MAX_QUORUM_BPS = 5_000;
    uint256 private constant _BPS = 10_000;

    IVotes private immutable _stakedPod;
    IBonding private immutable _bonding;

    /// @dev A governance setting outside its bounds; `setting` names it.
    error DolphinGovernorSettingOutOfBounds(string setting, uint256 value, uint256 min, uint256 max);

    /**
     * @param token POD (ERC-5805 votes, timestamp clock)
     * @param stakedPod StakedPOD (ERC-5805 votes in shares, timestamp clock; an ERC-4626 vault)
     * @param bonding Bonding, whose active bonds (stkPOD shares, checkpointed by timestamp) vote too
     * @param timelock the DolphinTimelock that executes passed proposals
     * @param votingDelay seconds between proposing and the vote snapshot
     * @param votingPeriod seconds the vote stays open
     * @param proposalThreshold POD-wei of votes needed to propose
     * @param quorumBps basis points of the past total supply that must vote for or abstain
     */
    constructor(
        IVotes token,
        IVotes stakedPod,
        IBonding bonding,
        TimelockController timelock,
        uint48 votingDelay,
        uint32 votingPeriod,
        uint256 proposalThreshold,
        uint256 quorumBps
    )
        Governor("Dolphin Governor")
        GovernorSettings(votingDelay, votingPeriod, proposalThreshold)
        GovernorVotes(token)
        GovernorVotesQuorumFraction(quorumBps)
        GovernorTimelockControl(timelock)
    {
        _stakedPod = stakedPod;
        _bonding = bonding;
    }

    /// @notice The quorum numerator is in basis points.
    function quorumDenominator() public pure override returns (uint256) {
        return _BPS;
    }

    /// @notice The staking vault whose shares vote.
    function stakedPod() external view returns (address) {
        return address(_stakedPod);
    }

    /// @notice The bonding contract whose active bonds vote.
    function bonding() external view returns (address) {
        return address(_bonding);
    }

    /**
     * @dev POD votes plus stkPOD votes and the account's own active bond, both in shares at `timepoint` and
     * valued in POD now. The vault's share price never falls (it has no loss path; slashes burn in
     * Bonding), and moving it takes giving POD away to every staker, so pricing at cast time cannot be
     * bought cheaply.
     */
    function _getVotes(address account, uint256 timepoint, bytes memory params)
        internal
        view
        override(Governor, GovernorVotes)
        returns (uint256)
    {
        uint256 shares = _stakedPod.getPastVotes(account, timepoint) + _bonding.activeBondAt(account, timepoint);
        uint256 staked = shares == 0 ? 0 : IERC4626(address(_stakedPod)).convertToAssets(shares);
        return super._getVotes(account, timepoint, params) + staked;
    }

    function _setVotingDelay(uint48 newVotingDelay) internal override {
        _checkBounds("votingDelay", newVotingDelay, 0, MAX_VOTING_DELAY);
        super._setVotingDelay(newVotingDelay);
    }

    function _setVotingPeriod(uint32 newVotingPeriod) internal override {
        _checkBounds("votingPeriod", newVotingPeriod, MIN_VOTING_PERIOD, MAX_VOTING_PERIOD);
        super._setVotingPeriod(newVotingPeriod);
    }

    function _setProposalThreshold(uint256 newProposalThreshold) internal override {
        _checkBounds("proposalThreshold", newProposalThreshold, 0, MAX_PROPOSAL_THRESHOLD);
        super._setProposalThreshold(newProposalThreshold);
    }

    function _updateQuorumNumerator(uint256 newQuorumNumerator) internal override {
        _checkBounds("quorumNumerator", newQuorumNumerator, MIN_QUORUM_BPS, MAX_QUORUM_BPS);
        super._updateQuorumNumerator(newQuorumNumerator);
    }

    function _checkBounds(string memory setting, uint256 value, uint256 min, uint256 max) private pure {
        if (value < min || value > max) revert DolphinGovernorSettingOutOfBounds(setting, value, min, max);
    }

    // The overrides below are required by Solidity to combine the modules; each defers to the chain.

    function state(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (ProposalState)
    {
        return super.state(proposalId);
    }

    function proposalNeedsQueuing(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (bool)
    {
        return super.proposalNeedsQueuing(proposalId);
    }

    function proposalThreshold() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.proposalThreshold();
    }

    function _queueOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint48) {
        return super._queueOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) {
        super._executeOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _cancel(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint256) {
        return super._cancel(targets, values, calldatas, descriptionHash);
    }

    function _executor() internal view override(Governor, GovernorTimelockControl) returns (address) {
        return super._executor();
    }
}
