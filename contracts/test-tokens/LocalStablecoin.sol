// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/**
 * @title LocalStablecoin, the payment-token stand-in of the local dev chain
 * @notice NOT a stablecoin: a plain 6-decimals ERC-20 (the USDC/USDT layout) with an open faucet, so tests,
 * the demo and the gas report can deposit credit and fill a Uniswap pair without a real stablecoin. It is
 * never deployed outside a local chain; anywhere else, Credits and Buyback take the real token's address.
 */
contract LocalStablecoin is ERC20 {
    constructor() ERC20("Local Stablecoin (dev chain only)", "lUSD") {}

    /// @dev Six decimals, like the stablecoins this stands in for, so amounts in tests read as on mainnet.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Faucet: anyone mints any amount to anyone. Acceptable only because this token is worthless.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
