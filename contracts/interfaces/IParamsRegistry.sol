// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IParamsRegistry, the governance-owned parameter table of spec/rewards.md
 * @notice The one home of every reward-engine parameter, read by settlers off chain and, for the few the
 * contracts enforce themselves (`validator_min_bond`), by contracts on chain.
 */
interface IParamsRegistry {
    /// @notice The current value of parameter `name` (reverts for a name the spec does not define).
    function valueOf(string calldata name) external view returns (uint256);

    /// @notice Every parameter name and its value, in the spec's table order.
    function getAll() external view returns (string[] memory names, uint256[] memory values);
}
