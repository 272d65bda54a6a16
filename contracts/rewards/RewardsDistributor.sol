// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IBonding} from "../interfaces/IBonding.sol";
import {IStakedPOD} from "../interfaces/IStakedPOD.sol";
import {IValidatorQuorum} from "../interfaces/IValidatorQuorum.sol";

/**
 * @title RewardsDistributor, node rewards paid from per-epoch Merkle roots
 * @notice Holds the node-rewards POD. After each epoch the current validator set signs (EIP-712 `EpochRoot`)
 * the root of a Merkle tree whose leaves are every account's *cumulative* rewards since genesis (leaf per
 * chain/merkle.py: OpenZeppelin's double-hashed `keccak256(bytes.concat(keccak256(abi.encode(account,
 * cumulativeAmount))))`), the tree's `total`, and the *next* validator set (`validators` ascending,
 * `weights` in stkPOD shares). A proposed root waits {rootDelay} before anyone may activate it; during that
 * wait a holder of REVOKER_ROLE (the timelock and a guardian it appoints, since a vote is slower than the
 * delay) can revoke it. Activation installs the next set in ValidatorQuorum, so the set changes only at
 * epoch boundaries and only through a root that survived the delay. Because amounts are cumulative, the
 * newest active root supersedes all earlier ones, an account claims `cumulative - claimed` and a replayed
 * claim pays 0.
 *
 * Claims are liquid POD, or bonded: the POD plus a governance-set bonus is deposited into StakedPOD and the
 * shares bonded to the account in one step. Only the account chooses: nobody can claim for it (which would
 * force the liquid path on someone waiting to claim bonded). The bonus is paid beside the cumulative amount
 * and so never enters anyone's base-earnings history.
 *
 * Solvent by construction: a root activates only if the pool holds everything it still owes
 * (`total - totalClaimed`), claims never pay past the active root's signed `total` (whatever the tree's
 * leaves add up to), and a bonus comes only out of what is *not* owed ({unreservedBalance}), so no claim,
 * bonded or not, can eat into another account's rewards.
 */
contract RewardsDistributor is AccessControl, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Accounts that may revoke a root during its delay.
    bytes32 public constant REVOKER_ROLE = keccak256("REVOKER_ROLE");

    /// @dev EIP-712 struct type, byte-identical to protocols/eth.py's EPOCH_ROOT.
    bytes32 public constant EPOCH_ROOT_TYPEHASH = keccak256(
        "EpochRoot(uint256 epoch,bytes32 root,uint256 total,address[] validators,uint256[] weights,uint256 deadline)"
    );

    /// @notice The furthest a root's signature deadline may lie ahead of its proposal.
    uint256 public constant MAX_SIGNATURE_TTL = 7 days;
    uint256 public constant MIN_ROOT_DELAY = 1 hours;
    uint256 public constant MAX_ROOT_DELAY = 14 days;
    uint256 public constant MAX_BONUS_BPS = 5000;
    uint256 private constant _BPS = 10_000;

    enum RootStatus {
        None,
        Pending,
        Revoked,
        Activated
    }

    /// @notice The message validators sign; field order and types are the EIP-712 type string's.
    struct EpochRoot {
        uint256 epoch;
        bytes32 root;
        uint256 total;
        address[] validators;
        uint256[] weights;
        uint256 deadline;
    }

    struct ProposedRoot {
        bytes32 root;
        uint256 total;
        bytes32 validatorSetHash;
        uint256 activatesAt;
        RootStatus status;
    }

    IERC20 private immutable _pod;
    IStakedPOD private immutable _stakedPod;
    IBonding private immutable _bonding;
    IValidatorQuorum private immutable _quorum;

    uint256 private _rootDelay;
    uint256 private _bondBonusBps;

    mapping(uint256 epoch => ProposedRoot) private _proposed;
    uint256 private _activeEpoch;
    bytes32 private _activeRoot;
    uint256 private _activeTotal;

    mapping(address account => uint256) private _claimed;
    uint256 private _totalClaimed;
    uint256 private _totalBonus;

    /// @dev The root's signatures expired at `deadline`.
    error RewardsDistributorExpired(uint256 deadline);
    /// @dev The root's `deadline` lies more than MAX_SIGNATURE_TTL ahead (at most `maxDeadline` now).
    error RewardsDistributorDeadlineTooFar(uint256 deadline, uint256 maxDeadline);
    /// @dev The validator set given on activation is not the one the root of `epoch` was signed with.
    error RewardsDistributorValidatorSetMismatch(uint256 epoch);
    /// @dev Activating needs `owed` POD in the pool (what the root still owes), which holds `balance`.
    error RewardsDistributorUnderfunded(uint256 owed, uint256 balance);
    /// @dev The claims would total `claimed`, past the active root's signed `total`.
    error RewardsDistributorTotalExceeded(uint256 claimed, uint256 total);
    /// @dev A root for `epoch` was already proposed.
    error RewardsDistributorEpochAlreadyProposed(uint256 epoch);
    /// @dev `epoch` is not after the active epoch `activeEpoch`.
    error RewardsDistributorEpochNotNewer(uint256 epoch, uint256 activeEpoch);
    /// @dev The root of `epoch` is not pending (never proposed, revoked or already activated).
    error RewardsDistributorRootNotPending(uint256 epoch);
    /// @dev The root of `epoch` activates only at `activatesAt`.
    error RewardsDistributorRootLocked(uint256 epoch, uint256 activatesAt);
    /// @dev The root of `epoch` totals less than the active root: cumulative totals never fall.
    error RewardsDistributorTotalDecreased(uint256 total, uint256 activeTotal);
    /// @dev The proof does not place (account, cumulativeAmount) under the active root.
    error RewardsDistributorInvalidProof(address account, uint256 cumulativeAmount);
    /// @dev A zero root or zero address.
    error RewardsDistributorZeroValue();
    /// @dev A governance setting outside its bounds; `setting` names it.
    error RewardsDistributorSettingOutOfBounds(string setting, uint256 value, uint256 min, uint256 max);

    /// @notice The quorum proposed `root` for `epoch` with the next validator set (`validators`, `weights`),
    /// activatable from `activatesAt` unless revoked.
    event RootProposed(
        uint256 indexed epoch,
        bytes32 root,
        uint256 total,
        address[] validators,
        uint256[] weights,
        uint256 activatesAt
    );
    /// @notice A revoker revoked the pending root of `epoch`.
    event RootRevoked(uint256 indexed epoch, address by);
    /// @notice The root of `epoch` became the one claims are proven against.
    event RootActivated(uint256 indexed epoch, bytes32 root, uint256 total);
    /// @notice `account` was paid `amount` of its cumulative rewards as liquid POD.
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);
    /// @notice `account` claimed `amount` plus `bonus` POD, staked into `shares` stkPOD bonded to it (the bonus
    /// is {bondBonusBps} of `amount`, or less when the unreserved balance is smaller).
    event ClaimedBonded(
        address indexed account, uint256 amount, uint256 bonus, uint256 shares, uint256 cumulativeAmount
    );
    /// @notice Governance set the delay between proposing and activating a root.
    event RootDelaySet(uint256 delay);
    /// @notice Governance set the bonus on bonded claims.
    event BondBonusSet(uint256 bps);

    /**
     * @param pod the reward token
     * @param stakedPod the vault bonded claims deposit into
     * @param bonding where bonded claims' shares are bonded
     * @param quorum the settlement quorum that signs epoch roots
     * @param admin the TimelockController (also granted REVOKER_ROLE)
     * @param rootDelay seconds between proposing and activating a root
     * @param bondBonusBps bonus on bonded claims, in basis points of the claimed amount
     */
    constructor(
        IERC20 pod,
        IStakedPOD stakedPod,
        IBonding bonding,
        IValidatorQuorum quorum,
        address admin,
        uint256 rootDelay,
        uint256 bondBonusBps
    ) EIP712("Dolphin Network", "1") {
        if (
            address(pod) == address(0) || address(stakedPod) == address(0) || address(bonding) == address(0)
                || address(quorum) == address(0) || admin == address(0)
        ) revert RewardsDistributorZeroValue();
        _pod = pod;
        _stakedPod = stakedPod;
        _bonding = bonding;
        _quorum = quorum;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REVOKER_ROLE, admin);
        _setRootDelay(rootDelay);
        _setBondBonusBps(bondBonusBps);
    }

    // ---------------------------------------------------------------- roots

    /**
     * @notice Proposes the cumulative-rewards root of `proposal.epoch` and the validator set that takes over
     * when it is activated, signed by a quorum of the current set over `proposal` (EIP-712 `EpochRoot`).
     * Anyone may relay it. It can be activated after {rootDelay}.
     * @param signatures validator signatures, signers ascending by address ({IValidatorQuorum-checkQuorum})
     */
    function proposeRoot(EpochRoot calldata proposal, bytes[] calldata signatures) external {
        uint256 epoch = proposal.epoch;
        if (block.timestamp > proposal.deadline) revert RewardsDistributorExpired(proposal.deadline);
        if (proposal.deadline > block.timestamp + MAX_SIGNATURE_TTL) {
            revert RewardsDistributorDeadlineTooFar(proposal.deadline, block.timestamp + MAX_SIGNATURE_TTL);
        }
        if (proposal.root == bytes32(0)) revert RewardsDistributorZeroValue();
        if (epoch <= _activeEpoch && _activeRoot != bytes32(0)) {
            revert RewardsDistributorEpochNotNewer(epoch, _activeEpoch);
        }
        if (_proposed[epoch].status != RootStatus.None) revert RewardsDistributorEpochAlreadyProposed(epoch);
        _quorum.checkValidatorSet(proposal.validators, proposal.weights);
        _quorum.checkQuorum(epochRootDigest(proposal), signatures);
        uint256 activatesAt = block.timestamp + _rootDelay;
        _proposed[epoch] = ProposedRoot({
            root: proposal.root,
            total: proposal.total,
            validatorSetHash: _validatorSetHash(proposal.validators, proposal.weights),
            activatesAt: activatesAt,
            status: RootStatus.Pending
        });
        emit RootProposed(epoch, proposal.root, proposal.total, proposal.validators, proposal.weights, activatesAt);
    }

    /// @notice Revokes the pending root of `epoch` (a wrong or malicious settlement). Only REVOKER_ROLE.
    function revokeRoot(uint256 epoch) external onlyRole(REVOKER_ROLE) {
        ProposedRoot storage proposed = _proposed[epoch];
        if (proposed.status != RootStatus.Pending) revert RewardsDistributorRootNotPending(epoch);
        proposed.status = RootStatus.Revoked;
        emit RootRevoked(epoch, msg.sender);
    }

    /**
     * @notice Makes the pending root of `epoch` the active one once its delay has passed, and installs the
     * validator set it was signed with (`validators`, `weights`: as in its {RootProposed} event); anyone may
     * call. Pending roots of earlier epochs are simply superseded (their amounts are included, being
     * cumulative). Reverts unless the pool holds all the root still owes.
     */
    function activateRoot(uint256 epoch, address[] calldata validators, uint256[] calldata weights) external {
        ProposedRoot storage proposed = _proposed[epoch];
        if (proposed.status != RootStatus.Pending) revert RewardsDistributorRootNotPending(epoch);
        if (block.timestamp < proposed.activatesAt) {
            revert RewardsDistributorRootLocked(epoch, proposed.activatesAt);
        }
        if (_activeRoot != bytes32(0) && epoch <= _activeEpoch) {
            revert RewardsDistributorEpochNotNewer(epoch, _activeEpoch);
        }
        if (proposed.total < _activeTotal) revert RewardsDistributorTotalDecreased(proposed.total, _activeTotal);
        if (_validatorSetHash(validators, weights) != proposed.validatorSetHash) {
            revert RewardsDistributorValidatorSetMismatch(epoch);
        }
        // totalClaimed <= activeTotal <= proposed.total: claims never pass the active total.
        uint256 owed = proposed.total - _totalClaimed;
        uint256 balance = _pod.balanceOf(address(this));
        if (owed > balance) revert RewardsDistributorUnderfunded(owed, balance);
        proposed.status = RootStatus.Activated;
        _activeEpoch = epoch;
        _activeRoot = proposed.root;
        _activeTotal = proposed.total;
        emit RootActivated(epoch, proposed.root, proposed.total);
        _quorum.installValidatorSet(epoch, validators, weights);
    }

    /// @notice The EIP-712 digest validators sign for an epoch root (domain "Dolphin Network", "1", this).
    function epochRootDigest(EpochRoot calldata proposal) public view returns (bytes32) {
        // EIP-712 encodes an array as keccak256 of its elements' 32-byte encodings, concatenated; encodePacked
        // pads array elements to 32 bytes, which is exactly that.
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    EPOCH_ROOT_TYPEHASH,
                    proposal.epoch,
                    proposal.root,
                    proposal.total,
                    keccak256(abi.encodePacked(proposal.validators)),
                    keccak256(abi.encodePacked(proposal.weights)),
                    proposal.deadline
                )
            )
        );
    }

    // ---------------------------------------------------------------- claims

    /**
     * @notice Pays the caller its unclaimed rewards as liquid POD. Returns the amount paid: 0 when everything
     * up to `cumulativeAmount` was already claimed.
     */
    function claim(uint256 cumulativeAmount, bytes32[] calldata proof) external returns (uint256 amount) {
        address account = _msgSender();
        amount = _consume(account, cumulativeAmount, proof);
        if (amount == 0) return 0;
        emit Claimed(account, amount, cumulativeAmount);
        _pod.safeTransfer(account, amount);
    }

    /**
     * @notice Claims the caller's unclaimed rewards plus {bondBonusBps} bonus, deposits them into StakedPOD
     * and bonds the shares to the caller, in one step. The bonus is paid only out of the unreserved balance
     * (less, or none, when that is short). Returns the POD claimed (without bonus); 0 pays nothing.
     */
    function claimBonded(uint256 cumulativeAmount, bytes32[] calldata proof) external returns (uint256 amount) {
        address account = _msgSender();
        amount = _consume(account, cumulativeAmount, proof);
        if (amount == 0) return 0;
        // The pool still holds `amount` here, and unreservedBalance() >= amount by the activation check.
        uint256 bonus = Math.min((amount * _bondBonusBps) / _BPS, unreservedBalance() - amount);
        _totalBonus += bonus;
        uint256 assets = amount + bonus;
        _pod.forceApprove(address(_stakedPod), assets);
        uint256 shares = _stakedPod.deposit(assets, address(this));
        IERC20(address(_stakedPod)).forceApprove(address(_bonding), shares);
        _bonding.bondFor(account, shares);
        emit ClaimedBonded(account, amount, bonus, shares, cumulativeAmount);
    }

    /// @dev Checks the proof and the signed total and records the claim; returns what is newly claimable.
    function _consume(address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        private
        returns (uint256 amount)
    {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, _activeRoot, leaf)) {
            revert RewardsDistributorInvalidProof(account, cumulativeAmount);
        }
        uint256 claimed = _claimed[account];
        // A proof against an older root (or a replay) proves no more than what was already paid.
        if (cumulativeAmount <= claimed) return 0;
        amount = cumulativeAmount - claimed;
        // A tree whose leaves add up to more than the signed total pays no more than that total.
        uint256 claimedByAll = _totalClaimed + amount;
        if (claimedByAll > _activeTotal) revert RewardsDistributorTotalExceeded(claimedByAll, _activeTotal);
        _claimed[account] = cumulativeAmount;
        _totalClaimed = claimedByAll;
    }

    /// @dev Commits to a validator set the way the EIP-712 struct hashes its two arrays.
    function _validatorSetHash(address[] calldata validators, uint256[] calldata weights)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(keccak256(abi.encodePacked(validators)), keccak256(abi.encodePacked(weights))));
    }

    // ---------------------------------------------------------------- governance

    /// @notice Sets the root delay for future proposals, within [MIN_ROOT_DELAY, MAX_ROOT_DELAY].
    function setRootDelay(uint256 delay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setRootDelay(delay);
    }

    /// @notice Sets the bonded-claim bonus, at most MAX_BONUS_BPS. Only the admin (timelock).
    function setBondBonusBps(uint256 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setBondBonusBps(bps);
    }

    function _setRootDelay(uint256 delay) private {
        if (delay < MIN_ROOT_DELAY || delay > MAX_ROOT_DELAY) {
            revert RewardsDistributorSettingOutOfBounds("rootDelay", delay, MIN_ROOT_DELAY, MAX_ROOT_DELAY);
        }
        _rootDelay = delay;
        emit RootDelaySet(delay);
    }

    function _setBondBonusBps(uint256 bps) private {
        if (bps > MAX_BONUS_BPS) {
            revert RewardsDistributorSettingOutOfBounds("bondBonusBps", bps, 0, MAX_BONUS_BPS);
        }
        _bondBonusBps = bps;
        emit BondBonusSet(bps);
    }

    // ---------------------------------------------------------------- views

    /// @notice What `account` has claimed so far (cumulative, bonus excluded).
    function claimedOf(address account) external view returns (uint256) {
        return _claimed[account];
    }

    /// @notice The root, cumulative total and epoch that claims are proven against.
    function activeRoot() external view returns (uint256 epoch, bytes32 root, uint256 total) {
        return (_activeEpoch, _activeRoot, _activeTotal);
    }

    /// @notice The proposal of `epoch`.
    function proposedRoot(uint256 epoch) external view returns (ProposedRoot memory) {
        return _proposed[epoch];
    }

    /// @notice POD the pool holds beyond what the active root still owes: what bonuses may be paid from.
    function unreservedBalance() public view returns (uint256) {
        uint256 owed = _activeTotal - _totalClaimed;
        uint256 balance = _pod.balanceOf(address(this));
        return balance > owed ? balance - owed : 0;
    }

    function totalClaimed() external view returns (uint256) {
        return _totalClaimed;
    }

    function totalBonus() external view returns (uint256) {
        return _totalBonus;
    }

    function rootDelay() external view returns (uint256) {
        return _rootDelay;
    }

    function bondBonusBps() external view returns (uint256) {
        return _bondBonusBps;
    }

    function pod() external view returns (address) {
        return address(_pod);
    }

    function stakedPod() external view returns (address) {
        return address(_stakedPod);
    }

    function bonding() external view returns (address) {
        return address(_bonding);
    }

    function quorum() external view returns (address) {
        return address(_quorum);
    }
}
