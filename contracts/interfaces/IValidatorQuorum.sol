// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IValidatorQuorum, the shared "enough bonded validators signed this" check
 * @notice Slashing, Credits and RewardsDistributor each build their own EIP-712 digest (domain "Dolphin
 * Network", version "1", verifyingContract = themselves) and ask this contract whether validators holding
 * at least {quorumBps} of the total validator weight signed it. Weights come from {IBonding}.
 */
interface IValidatorQuorum {
    /// @notice Governance changed the fraction of validator weight a quorum needs.
    event QuorumBpsSet(uint256 quorumBps);

    /**
     * @notice Returns the summed validator weight of the signers of `digest`.
     * @dev Reverts unless every signature recovers (ECDSA, no malleable `s`) to a current validator, the
     * signers are strictly ascending by address (so none is counted twice), and their weight reaches
     * `quorumBps * totalValidatorWeight / 10000`, rounded up.
     */
    function checkQuorum(bytes32 digest, bytes[] calldata signatures) external view returns (uint256 signedWeight);

    /// @notice The weight needed right now, in basis points of the total validator weight.
    function quorumBps() external view returns (uint256);

    /// @notice The weight needed right now, in absolute validator weight.
    function requiredWeight() external view returns (uint256);

    /// @notice The bonding contract whose validator weights count.
    function bonding() external view returns (address);
}
