// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/**
 * @title DolphinTimelock, the owner of every protocol parameter
 * @notice OpenZeppelin's TimelockController, unchanged except that its one setter, {updateDelay}, is
 * bounded like every other setter in the protocol: a vote can neither remove the delay users rely on to
 * exit before a change lands, nor lengthen it until governance is frozen.
 */
contract DolphinTimelock is TimelockController {
    uint256 public constant MIN_DELAY_FLOOR = 1 hours;
    uint256 public constant MIN_DELAY_CEILING = 30 days;

    /// @dev A minimum delay outside [MIN_DELAY_FLOOR, MIN_DELAY_CEILING].
    error DolphinTimelockDelayOutOfBounds(uint256 delay, uint256 min, uint256 max);

    /**
     * @param minDelay initial minimum delay, within the bounds
     * @param proposers accounts (the Governor) that may schedule and cancel operations
     * @param executors accounts that may execute ready operations (address(0) means anyone)
     * @param admin optional bootstrap admin that renounces after wiring roles; address(0) for none
     */
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {
        _checkDelay(minDelay);
    }

    /// @inheritdoc TimelockController
    function updateDelay(uint256 newDelay) public override {
        _checkDelay(newDelay);
        super.updateDelay(newDelay);
    }

    function _checkDelay(uint256 delay) private pure {
        if (delay < MIN_DELAY_FLOOR || delay > MIN_DELAY_CEILING) {
            revert DolphinTimelockDelayOutOfBounds(delay, MIN_DELAY_FLOOR, MIN_DELAY_CEILING);
        }
    }
}
