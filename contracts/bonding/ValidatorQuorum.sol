// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IBonding} from "../interfaces/IBonding.sol";
import {IValidatorQuorum} from "../interfaces/IValidatorQuorum.sol";

/**
 * @title ValidatorQuorum, "validators holding enough bonded stake signed this digest"
 * @notice See {IValidatorQuorum}. Weights are read live from {IBonding} (O(1) total). Signers must be listed
 * in strictly ascending address order, the Gnosis Safe convention: one comparison per signature proves
 * they are distinct, with no storage and no sorting on chain.
 */
contract ValidatorQuorum is IValidatorQuorum, AccessControl {
    /// @notice May set {quorumBps}: the timelock.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");

    /// @notice Strictly more than half, so two disjoint signer sets can never both reach quorum.
    uint256 public constant MIN_QUORUM_BPS = 5_001;
    uint256 public constant MAX_QUORUM_BPS = 10_000;
    uint256 private constant BPS = 10_000;

    IBonding private immutable _bonding;
    uint256 private _quorumBps;

    /// @dev No validator has weight, so no quorum can exist.
    error ValidatorQuorumNoValidators();
    /// @dev `signer` is not above the previous signer: the list is unsorted or repeats someone.
    error ValidatorQuorumSignersNotAscending(address signer);
    /// @dev `signer` has no validator weight.
    error ValidatorQuorumNotValidator(address signer);
    /// @dev The signers hold `signedWeight`, short of the `requiredWeight`.
    error ValidatorQuorumNotReached(uint256 signedWeight, uint256 requiredWeight);
    /// @dev Governance asked for `value`, outside [`min`, `max`].
    error ValidatorQuorumParameterOutOfBounds(uint256 value, uint256 min, uint256 max);

    /**
     * @param bonding_ where validator weights live
     * @param admin receives DEFAULT_ADMIN_ROLE and PARAMETERS_ROLE (the timelock)
     * @param quorumBps_ initial quorum, e.g. 6_667 for two thirds
     */
    constructor(IBonding bonding_, address admin, uint256 quorumBps_) {
        _bonding = bonding_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PARAMETERS_ROLE, admin);
        _setQuorumBps(quorumBps_);
    }

    /// @inheritdoc IValidatorQuorum
    function checkQuorum(bytes32 digest, bytes[] calldata signatures) external view returns (uint256 signedWeight) {
        uint256 required = requiredWeight();
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            // recoverCalldata rejects malformed signatures and high-s (malleable) ones.
            address signer = ECDSA.recoverCalldata(digest, signatures[i]);
            if (signer <= previous) revert ValidatorQuorumSignersNotAscending(signer);
            previous = signer;
            uint256 weight = _bonding.validatorWeight(signer);
            if (weight == 0) revert ValidatorQuorumNotValidator(signer);
            signedWeight += weight;
        }
        if (signedWeight < required) revert ValidatorQuorumNotReached(signedWeight, required);
    }

    /// @inheritdoc IValidatorQuorum
    function requiredWeight() public view returns (uint256) {
        uint256 total = _bonding.totalValidatorWeight();
        if (total == 0) revert ValidatorQuorumNoValidators();
        return Math.mulDiv(total, _quorumBps, BPS, Math.Rounding.Ceil);
    }

    /// @inheritdoc IValidatorQuorum
    function quorumBps() external view returns (uint256) {
        return _quorumBps;
    }

    /// @inheritdoc IValidatorQuorum
    function bonding() external view returns (address) {
        return address(_bonding);
    }

    /// @notice Sets the share of total validator weight a quorum needs, within [MIN_QUORUM_BPS, MAX_QUORUM_BPS].
    function setQuorumBps(uint256 quorumBps_) external onlyRole(PARAMETERS_ROLE) {
        _setQuorumBps(quorumBps_);
    }

    function _setQuorumBps(uint256 quorumBps_) private {
        if (quorumBps_ < MIN_QUORUM_BPS || quorumBps_ > MAX_QUORUM_BPS) {
            revert ValidatorQuorumParameterOutOfBounds(quorumBps_, MIN_QUORUM_BPS, MAX_QUORUM_BPS);
        }
        _quorumBps = quorumBps_;
        emit QuorumBpsSet(quorumBps_);
    }
}
