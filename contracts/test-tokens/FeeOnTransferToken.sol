// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/**
 * @title FeeOnTransferToken, a test double of a payment token that delivers less than it is asked to
 * @notice NOT for deployment: a 6-decimals ERC-20 with an open faucet that burns 1% of every transfer
 * between two holders, as some real tokens take a fee. Tests use it to show that Credits refuses such a
 * token instead of crediting more than it received.
 */
contract FeeOnTransferToken is ERC20 {
    uint256 private constant _FEE_BPS = 100;
    uint256 private constant _BPS = 10_000;

    constructor() ERC20("Fee-on-transfer token (tests only)", "FOT") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Faucet: anyone mints any amount to anyone.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Transfers between holders burn the fee out of the amount sent; mints and burns are untouched.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * _FEE_BPS) / _BPS;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
