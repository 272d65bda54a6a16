// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/**
 * @title POD, the Dolphin Network token
 * @notice Fixed supply minted once at deployment: part to the treasury, part to the node-rewards pool.
 * Nothing can mint afterwards; buybacks and slashes reduce supply through {burn}. Votes (ERC-5805) let
 * the Governor weigh proposals by POD; permit (ERC-2612) lets wallets approve with a signature.
 */
contract POD is ERC20, ERC20Burnable, ERC20Permit, ERC20Votes {
    /// @dev A recipient of the initial supply was the zero address.
    error PODInvalidRecipient();

    /**
     * @param treasury receives `treasurySupply` (team, liquidity, grants — governed by the timelock)
     * @param rewardsPool receives `rewardsSupply`, the node-rewards emission paid out by the distributor
     */
    constructor(address treasury, uint256 treasurySupply, address rewardsPool, uint256 rewardsSupply)
        ERC20("Dolphin POD", "POD")
        ERC20Permit("Dolphin POD")
    {
        if (treasury == address(0) || rewardsPool == address(0)) revert PODInvalidRecipient();
        _mint(treasury, treasurySupply);
        _mint(rewardsPool, rewardsSupply);
    }

    /// @dev Votes checkpoint by timestamp so governance periods read in seconds, like every other duration here.
    function clock() public view override returns (uint48) {
        return uint48(block.timestamp);
    }

    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() public pure override returns (string memory) {
        return "mode=timestamp";
    }

    // The two overrides below are required by Solidity to combine ERC20 with ERC20Votes and ERC20Permit.

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }

    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }
}
