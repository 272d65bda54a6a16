// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {IValidatorQuorum} from "../interfaces/IValidatorQuorum.sol";

/**
 * @title Credits, prepaid inference credit of API users
 * @notice API users deposit the payment token (a stablecoin) as credit. Each epoch the settlement quorum of
 * validators signs a batch of debits (EIP-712 `CreditDebitBatch`), aggregated off-chain from the users' own
 * `CreditAuthorization`s; anyone relays the batch here, and the debited tokens go straight to the protocol's
 * revenue recipient (the Buyback). Unspent credit leaves in two steps, request then withdraw after
 * {withdrawalDelay}, and stays debitable while it waits: nobody can pull credit out from under an epoch's
 * debits. It is not spendable, though: {spendableOf} (what nodes serve against) excludes it from the moment
 * it is requested, and settlement excludes it from the epochs that begin after the request
 * ({withdrawalRequestOf}'s `requestedAt`), so a request can never turn answers already given into free ones.
 * A debit batch never reverts because one user's credit fell short: that user is debited what is left
 * ({DebitShortfall}) and everybody else in the batch is debited in full.
 *
 * Conservation: the token balance held here always equals the sum of all credit balances, since every path
 * that moves tokens (deposit, debit, withdraw) moves a credit balance by the same amount. A deposit credits
 * only after measuring that the full amount arrived: a token that takes a fee on transfer (or otherwise
 * delivers less than asked) is refused rather than allowed to create credit it does not back.
 */
contract Credits is Ownable, EIP712 {
    using SafeERC20 for IERC20;

    /// @dev EIP-712 struct type, byte-identical to protocols/ethsig.py.
    bytes32 public constant CREDIT_DEBIT_BATCH_TYPEHASH =
        keccak256("CreditDebitBatch(uint256 batchId,address[] users,uint256[] amounts,uint256 deadline)");

    uint256 public constant MIN_WITHDRAWAL_DELAY = 1 days;
    uint256 public constant MAX_WITHDRAWAL_DELAY = 30 days;
    /// @dev Bounds the gas of one settlement so a batch always fits in a block.
    uint256 public constant MAX_BATCH_SIZE = 500;
    /// @notice The furthest a batch's signature deadline may lie ahead of its settlement.
    uint256 public constant MAX_SIGNATURE_TTL = 7 days;
    /// @notice The highest price per million tokens governance may set (1e12 smallest units: a million
    /// dollars of a 6-decimal stablecoin), which keeps `price * tokens` far from overflow off chain too.
    uint256 public constant MAX_PRICE = 1e12;

    struct WithdrawalRequest {
        uint256 amount;
        uint256 unlockTime;
        uint256 requestedAt;
    }

    IERC20 private immutable _token;
    IValidatorQuorum private immutable _quorum;

    address private _revenueRecipient;
    uint256 private _withdrawalDelay;
    uint256 private _totalCredit;
    uint256 private _totalRevenue;
    mapping(address user => uint256) private _credit;
    mapping(address user => WithdrawalRequest) private _withdrawals;
    mapping(uint256 batchId => bool) private _settled;
    uint256 private _defaultPrice;
    mapping(bytes32 model => uint256) private _prices;

    /// @dev A zero amount where a positive one is needed.
    error CreditsZeroAmount();
    /// @dev The zero address where an account or recipient is needed.
    error CreditsZeroAddress();
    /// @dev `requested` is more credit than `user` holds.
    error CreditsInsufficientCredit(address user, uint256 credit, uint256 requested);
    /// @dev `user` has no pending withdrawal request.
    error CreditsNoWithdrawalRequest(address user);
    /// @dev The request of the caller unlocks only at `unlockTime`.
    error CreditsWithdrawalLocked(uint256 unlockTime);
    /// @dev The debit batch `batchId` was already settled.
    error CreditsBatchAlreadySettled(uint256 batchId);
    /// @dev The debit batch's signatures expired at `deadline`.
    error CreditsBatchExpired(uint256 deadline);
    /// @dev The batch's `deadline` lies more than MAX_SIGNATURE_TTL ahead (at most `maxDeadline` now).
    error CreditsDeadlineTooFar(uint256 deadline, uint256 maxDeadline);
    /// @dev A deposit of `amount` delivered only `received`: fee-on-transfer tokens are not supported.
    error CreditsTransferShortfall(uint256 amount, uint256 received);
    /// @dev The batch's user and amount lists differ in length, are empty or exceed MAX_BATCH_SIZE.
    error CreditsInvalidBatch(uint256 users, uint256 amounts);
    /// @dev A withdrawal delay outside [MIN_WITHDRAWAL_DELAY, MAX_WITHDRAWAL_DELAY].
    error CreditsDelayOutOfBounds(uint256 delay, uint256 min, uint256 max);
    /// @dev A price above MAX_PRICE per million tokens.
    error CreditsPriceOutOfBounds(uint256 price, uint256 max);

    /// @notice `from` added `amount` to the credit of `user`.
    event Deposited(address indexed user, address indexed from, uint256 amount);
    /// @notice `user` asked to withdraw up to `amount`, available from `unlockTime`.
    event WithdrawalRequested(address indexed user, uint256 amount, uint256 unlockTime);
    /// @notice `user` dropped its pending withdrawal request.
    event WithdrawalCancelled(address indexed user);
    /// @notice `user` withdrew `amount` of unspent credit.
    event Withdrawn(address indexed user, uint256 amount);
    /// @notice Batch `batchId` debited `amount` from `user`.
    event Debited(uint256 indexed batchId, address indexed user, uint256 amount);
    /// @notice Batch `batchId` asked `amount` of `user`, whose credit covered only `debited` (then debited).
    event DebitShortfall(uint256 indexed batchId, address indexed user, uint256 amount, uint256 debited);
    /// @notice Batch `batchId` was settled; `total` went to `revenueRecipient`.
    event BatchSettled(uint256 indexed batchId, uint256 total, address revenueRecipient);
    /// @notice Governance changed the withdrawal delay for future requests.
    event WithdrawalDelaySet(uint256 delay);
    /// @notice Governance changed where debited revenue goes.
    event RevenueRecipientSet(address recipient);
    /// @notice Governance set the price of `model` (the zero model: the default price), in the payment token's
    /// smallest units per million tokens; 0 for a model means "the default price".
    event PriceSet(bytes32 indexed model, uint256 pricePerMillionTokens);

    /**
     * @param token the payment token users deposit
     * @param quorum the validator quorum that authorises debit batches
     * @param revenueRecipient where debits go (the Buyback)
     * @param withdrawalDelay seconds between a withdrawal request and the withdrawal, within bounds
     * @param defaultPrice the price per million tokens of every model governance has not priced
     * @param owner_ the TimelockController
     */
    constructor(
        IERC20 token,
        IValidatorQuorum quorum,
        address revenueRecipient,
        uint256 withdrawalDelay,
        uint256 defaultPrice,
        address owner_
    ) Ownable(owner_) EIP712("Dolphin Network", "1") {
        if (address(token) == address(0) || address(quorum) == address(0)) revert CreditsZeroAddress();
        _token = token;
        _quorum = quorum;
        _setRevenueRecipient(revenueRecipient);
        _setWithdrawalDelay(withdrawalDelay);
        _setPrice(bytes32(0), defaultPrice);
    }

    // ---------------------------------------------------------------- users

    /// @notice Adds `amount` of the payment token, pulled from the caller, to the caller's credit.
    function deposit(uint256 amount) external {
        depositFor(msg.sender, amount);
    }

    /// @notice Adds `amount`, pulled from the caller, to the credit of `user` (a gateway topping up a user).
    function depositFor(address user, uint256 amount) public {
        if (amount == 0) revert CreditsZeroAmount();
        if (user == address(0)) revert CreditsZeroAddress();
        // Pull first and measure (ERC4626._deposit's order): the payment token is external code, and credit
        // must be created only for tokens that actually arrived.
        uint256 before = _token.balanceOf(address(this));
        _token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = _token.balanceOf(address(this)) - before;
        if (received != amount) revert CreditsTransferShortfall(amount, received);
        _credit[user] += amount;
        _totalCredit += amount;
        emit Deposited(user, msg.sender, amount);
    }

    /**
     * @notice Asks to withdraw up to `amount` of the caller's credit after {withdrawalDelay}. A new request
     * replaces the old one and restarts the wait, so splitting or topping up never shortens it.
     */
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert CreditsZeroAmount();
        uint256 credit = _credit[msg.sender];
        if (amount > credit) revert CreditsInsufficientCredit(msg.sender, credit, amount);
        uint256 unlockTime = block.timestamp + _withdrawalDelay;
        _withdrawals[msg.sender] =
            WithdrawalRequest({amount: amount, unlockTime: unlockTime, requestedAt: block.timestamp});
        emit WithdrawalRequested(msg.sender, amount, unlockTime);
    }

    /// @notice Drops the caller's pending withdrawal request.
    function cancelWithdrawal() external {
        if (_withdrawals[msg.sender].unlockTime == 0) revert CreditsNoWithdrawalRequest(msg.sender);
        delete _withdrawals[msg.sender];
        emit WithdrawalCancelled(msg.sender);
    }

    /**
     * @notice Pays out the caller's unlocked request: the requested amount, or less if debits settled
     * during the wait left less credit. Returns what was paid.
     */
    function withdraw() external returns (uint256 amount) {
        WithdrawalRequest memory request = _withdrawals[msg.sender];
        if (request.unlockTime == 0) revert CreditsNoWithdrawalRequest(msg.sender);
        if (block.timestamp < request.unlockTime) revert CreditsWithdrawalLocked(request.unlockTime);
        uint256 credit = _credit[msg.sender];
        amount = request.amount < credit ? request.amount : credit;
        delete _withdrawals[msg.sender];
        _credit[msg.sender] = credit - amount;
        _totalCredit -= amount;
        emit Withdrawn(msg.sender, amount);
        if (amount > 0) _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- settlement

    /**
     * @notice Debits a batch of users, authorised by the settlement quorum's EIP-712 signatures over
     * `CreditDebitBatch(batchId, users, amounts, deadline)`, and sends the total to the revenue recipient.
     * Anyone may relay it. Validators sign only debits that users authorised and whose credit covered them
     * at the epoch's close; a user whose credit has fallen short since (a withdrawal that completed before
     * the batch landed) is debited all that is left, with a {DebitShortfall}, and the rest of the batch
     * lands in full: no single user can void everybody else's debits.
     * @param signatures validator signatures over the digest, signers ascending by address (see
     * {IValidatorQuorum-checkQuorum})
     */
    function settleDebits(
        uint256 batchId,
        address[] calldata users,
        uint256[] calldata amounts,
        uint256 deadline,
        bytes[] calldata signatures
    ) external {
        if (block.timestamp > deadline) revert CreditsBatchExpired(deadline);
        if (deadline > block.timestamp + MAX_SIGNATURE_TTL) {
            revert CreditsDeadlineTooFar(deadline, block.timestamp + MAX_SIGNATURE_TTL);
        }
        if (_settled[batchId]) revert CreditsBatchAlreadySettled(batchId);
        if (users.length != amounts.length || users.length == 0 || users.length > MAX_BATCH_SIZE) {
            revert CreditsInvalidBatch(users.length, amounts.length);
        }
        _quorum.checkQuorum(debitBatchDigest(batchId, users, amounts, deadline), signatures);
        _settled[batchId] = true;

        uint256 total = 0;
        for (uint256 i = 0; i < users.length; ++i) {
            address user = users[i];
            uint256 amount = amounts[i];
            uint256 credit = _credit[user];
            if (amount > credit) {
                emit DebitShortfall(batchId, user, amount, credit);
                amount = credit;
            }
            _credit[user] = credit - amount;
            total += amount;
            emit Debited(batchId, user, amount);
        }
        _totalCredit -= total;
        _totalRevenue += total;
        address recipient = _revenueRecipient;
        emit BatchSettled(batchId, total, recipient);
        if (total > 0) _token.safeTransfer(recipient, total);
    }

    /// @notice The EIP-712 digest validators sign for a debit batch (domain "Dolphin Network", "1", this).
    function debitBatchDigest(
        uint256 batchId,
        address[] calldata users,
        uint256[] calldata amounts,
        uint256 deadline
    ) public view returns (bytes32) {
        // EIP-712 encodes an array as keccak256 of its elements' 32-byte encodings, concatenated; encodePacked
        // pads array elements to 32 bytes, which is exactly that.
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CREDIT_DEBIT_BATCH_TYPEHASH,
                    batchId,
                    keccak256(abi.encodePacked(users)),
                    keccak256(abi.encodePacked(amounts)),
                    deadline
                )
            )
        );
    }

    // ---------------------------------------------------------------- governance

    /// @notice Sets the delay applied to future withdrawal requests. Only the owner (timelock).
    function setWithdrawalDelay(uint256 delay) external onlyOwner {
        _setWithdrawalDelay(delay);
    }

    /// @notice Sets where debited revenue goes. Only the owner (timelock).
    function setRevenueRecipient(address recipient) external onlyOwner {
        _setRevenueRecipient(recipient);
    }

    /**
     * @notice Sets what `model` (a model manifest hash) costs per million tokens (prompt and output alike), in
     * the payment token's smallest units; 0 returns it to the default price. The zero model sets the default.
     * Settlement reads the price at each epoch's closing block, so a change applies from the next close.
     * Only the owner (timelock).
     */
    function setPrice(bytes32 model, uint256 pricePerMillionTokens) external onlyOwner {
        _setPrice(model, pricePerMillionTokens);
    }

    function _setPrice(bytes32 model, uint256 price) private {
        if (price > MAX_PRICE) revert CreditsPriceOutOfBounds(price, MAX_PRICE);
        if (model == bytes32(0)) _defaultPrice = price;
        else _prices[model] = price;
        emit PriceSet(model, price);
    }

    function _setWithdrawalDelay(uint256 delay) private {
        if (delay < MIN_WITHDRAWAL_DELAY || delay > MAX_WITHDRAWAL_DELAY) {
            revert CreditsDelayOutOfBounds(delay, MIN_WITHDRAWAL_DELAY, MAX_WITHDRAWAL_DELAY);
        }
        _withdrawalDelay = delay;
        emit WithdrawalDelaySet(delay);
    }

    function _setRevenueRecipient(address recipient) private {
        if (recipient == address(0)) revert CreditsZeroAddress();
        _revenueRecipient = recipient;
        emit RevenueRecipientSet(recipient);
    }

    // ---------------------------------------------------------------- views

    /// @notice What `model` costs per million tokens, in the payment token's smallest units (the default
    /// price unless governance priced the model).
    function priceOf(bytes32 model) external view returns (uint256) {
        uint256 price = _prices[model];
        return price != 0 ? price : _defaultPrice;
    }

    /// @notice Credit `user` holds, including any amount waiting to be withdrawn (still debitable).
    function creditOf(address user) external view returns (uint256) {
        return _credit[user];
    }

    /// @notice Credit `user` may spend on new requests: its credit less its pending withdrawal request.
    function spendableOf(address user) public view returns (uint256) {
        uint256 credit = _credit[user];
        uint256 withdrawing = _withdrawals[user].amount;
        return withdrawing < credit ? credit - withdrawing : 0;
    }

    /**
     * @notice One read for many wallets (settlement and receipt admission read thousands at one block):
     * each one's credit, the amount of its pending withdrawal request and when that request was made (zeros
     * when none).
     */
    function creditsOf(address[] calldata users)
        external
        view
        returns (uint256[] memory credit, uint256[] memory withdrawing, uint256[] memory requestedAt)
    {
        credit = new uint256[](users.length);
        withdrawing = new uint256[](users.length);
        requestedAt = new uint256[](users.length);
        for (uint256 i = 0; i < users.length; ++i) {
            WithdrawalRequest memory request = _withdrawals[users[i]];
            credit[i] = _credit[users[i]];
            withdrawing[i] = request.amount;
            requestedAt[i] = request.requestedAt;
        }
    }

    /// @notice The pending withdrawal request of `user` (zeros when none).
    function withdrawalRequestOf(address user) external view returns (uint256 amount, uint256 unlockTime) {
        WithdrawalRequest memory request = _withdrawals[user];
        return (request.amount, request.unlockTime);
    }

    /// @notice Whether debit batch `batchId` has been settled.
    function isSettled(uint256 batchId) external view returns (bool) {
        return _settled[batchId];
    }

    /// @notice Sum of every user's credit; equals the token balance held here.
    function totalCredit() external view returns (uint256) {
        return _totalCredit;
    }

    /// @notice Everything debited so far and sent to the revenue recipient.
    function totalRevenue() external view returns (uint256) {
        return _totalRevenue;
    }

    function token() external view returns (IERC20) {
        return _token;
    }

    function quorum() external view returns (IValidatorQuorum) {
        return _quorum;
    }

    function revenueRecipient() external view returns (address) {
        return _revenueRecipient;
    }

    function withdrawalDelay() external view returns (uint256) {
        return _withdrawalDelay;
    }
}
