"""What operators, validators, settlers and API users do on chain, through web3.py bindings.

`ChainClient(rpc_url, deployment, key)` binds every contract of a deployment (deployment file, see
chain.deploy) from the compiled artifacts and signs with one account. Amounts are integers in the token's
smallest unit (wei of POD, 1e-6 lUSD); `parse_units`/`format_units` convert the decimal strings people
type. A revert comes back as `ExplainedRevert`: the contract's custom error, decoded, and a hint saying
what to do about it. Reads retry when the node does not answer; a transaction is sent once (see
chain.transactions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chain import areas
from chain.address import checked_address
from chain.artifacts import ContractRevert, load_artifact, load_npm_artifact
from chain.deploy import Deployment, check_deployment
from chain.errors import ChainError
from chain.merkle import RewardsTree
from chain.quorum import (
    QuorumRule,
    debit_batch_digest,
    debit_batch_signature,
    epoch_root_digest,
    epoch_root_signature,
    quorum_order,
)
from chain.transactions import connect, read, send
from protocols.eth import EthAccount
from protocols.messages import OperatorBinding, eth_sign

POD_DECIMALS = 18
USD_DECIMALS = 6
_LAST_FORMATTABLE_TIME = 253402300799
"""9999-12-31T23:59:59Z: a hint's integer argument beyond this is an amount, never a time."""

# Contract name in the deployment -> artifact holding its ABI.
_BINDINGS: Mapping[str, Callable[[], Any]] = {
    "POD": lambda: load_artifact("POD"),
    # Any ERC-20: LocalStablecoin's ABI is the standard one plus a faucet only the dev chain's token has.
    "PaymentToken": lambda: load_artifact("LocalStablecoin"),
    "StakedPOD": lambda: load_artifact("StakedPOD"),
    "Bonding": lambda: load_artifact("Bonding"),
    "ValidatorQuorum": lambda: load_artifact("ValidatorQuorum"),
    "Slashing": lambda: load_artifact("Slashing"),
    "Credits": lambda: load_artifact("Credits"),
    "Buyback": lambda: load_artifact("Buyback"),
    "RewardsDistributor": lambda: load_artifact("RewardsDistributor"),
    "ParamsRegistry": lambda: load_artifact("ParamsRegistry"),
    "UniswapV2Pair": lambda: load_npm_artifact("@uniswap/v2-core/build/UniswapV2Pair.json"),
}


class ClientError(ChainError):
    """A request the client refuses before sending anything (bad amount, key, tree or state)."""


class ExplainedRevert(ContractRevert):
    """A revert decoded to the contract's custom error, with `hint`: what the user can do about it."""

    def __init__(self, message: str, error: str | None, args: tuple, hint: str | None):
        super().__init__(message + (f"\n{hint}" if hint else ""), error, args)
        self.hint = hint


# ---------------------------------------------------------------------------------------------- amounts


def parse_units(text: str, decimals: int) -> int:
    """A decimal amount ("1.5", "100000") as an integer of the smallest unit; ClientError if not exact."""
    try:
        value = Decimal(text.strip().replace("_", ""))
    except (InvalidOperation, AttributeError):
        raise ClientError(f"not an amount: {text!r} (write a decimal number, like 1000 or 0.5)") from None
    scaled = value.scaleb(decimals)
    if not value.is_finite() or value <= 0 or scaled != scaled.to_integral_value():
        raise ClientError(f"amount must be positive with at most {decimals} decimals, got {text!r}")
    return int(scaled)


def format_units(value: int, decimals: int) -> str:
    """An integer of the smallest unit as a plain decimal string, without trailing zeros."""
    whole, fraction = divmod(value, 10**decimals)
    text = f"{whole:,}"
    if fraction:
        text += "." + f"{fraction:0{decimals}d}".rstrip("0")
    return text


def format_time(timestamp: int, now: int | None = None) -> str:
    """A unix time as UTC, with how far away it is from chain time `now` when given."""
    when = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if now is None:
        return when
    delta = timestamp - now
    span = abs(delta)
    amount = f"{span // 86400} d {span % 86400 // 3600} h" if span >= 86400 else f"{span // 60} min"
    return f"{when} ({'in ' + amount if delta > 0 else amount + ' ago'})"


# ---------------------------------------------------------------------------------------------- hints

# What to do about each custom error a user command can meet. Placeholders: {0}, {1}... are the error's
# arguments, {t0}, {t1}... the same arguments as times, {p0}... as POD amounts, {u0}... as lUSD amounts.
HINTS: Mapping[str, str] = {
    "StakedPODZeroBalance": "You hold no stkPOD: stake first with `dolphin chain stake AMOUNT`.",
    "StakedPODNoCooldown": (
        "Redeeming needs a finished cooldown: run `dolphin chain cooldown`, wait 90 days, then run "
        "`dolphin chain redeem` within the 7-day unstake window."
    ),
    "StakedPODCooldownNotFinished": (
        "Your cooldown ends at {t1}: run `dolphin chain redeem` then, within the 7-day unstake window."
    ),
    "StakedPODUnstakeWindowClosed": (
        "Your unstake window closed at {t1}: run `dolphin chain cooldown` again and wait 90 days."
    ),
    "StakedPODExceedsCooldown": (
        "Your cooldown covers only {2} shares: redeem less, or run `dolphin chain cooldown` again to cover "
        "your whole balance (that restarts the 90 days)."
    ),
    "ERC4626ExceededMaxRedeem": "Nothing is redeemable outside the unstake window: `dolphin chain status`.",
    "ERC4626ExceededMaxWithdraw": "Nothing is redeemable outside the unstake window: `dolphin chain status`.",
    "ERC20InsufficientBalance": (
        "Your balance is {1} (smallest units) but {2} are needed: see `dolphin chain status`."
    ),
    "ERC20InsufficientAllowance": "The allowance is {1} but {2} are needed; approve more and try again.",
    "BondingZeroShares": "The amount is worth less than one stkPOD share: use a larger amount.",
    "BondingInsufficientActiveBond": (
        "Your active bond is {2} shares, fewer than the {1} asked for: see `dolphin chain status`."
    ),
    "BondingUnknownRequest": "No open unbond request {0} (withdrawn already?): see `dolphin chain status`.",
    "BondingNotRequestOwner": "Unbond request {0} belongs to another account: withdraw it with that key.",
    "BondingStillThawing": "Unbond request {0} thaws until {t1}: run `dolphin chain withdraw` after that.",
    "ValidatorQuorumBelowMinimumBond": (
        "Validators need an active bond worth {p2} POD; yours is worth {p1}: bond more with "
        "`dolphin chain bond AMOUNT`, then join."
    ),
    "ValidatorQuorumMembershipUnchanged": "Nothing to do: the account is already so (joined: {1}).",
    "BondingNodeAlreadyRegistered": "This node is already registered to the account.",
    "BondingNodeNotRegistered": "This account registered no such node.",
    "BondingInvalidSignature": "The NodeBinding signature is not the operator's: sign with that key.",
    "BondingInvalidPeerId": "A zero peer id hash names no node.",
    "ValidatorQuorumNoValidators": "The validator set has no weight left to decide this with.",
    "ValidatorQuorumNotReached": (
        "The signers hold {0} of the {1} validator weight needed: collect more signatures from members of "
        "the current set (`dolphin chain validators show`)."
    ),
    "ValidatorQuorumSignersNotAscending": "Give each validator's signature once, ordered by signer address.",
    "ValidatorQuorumSetNotAscending": "List the next validator set once each, ascending by address.",
    "ValidatorQuorumInvalidSetSize": "A validator set has 1 to 100 members, each with one weight.",
    "ValidatorQuorumZeroWeight": "{0} was given a zero weight: every member of a set needs a positive one.",
    "ValidatorQuorumNoEligibleMember": (
        "None of the next set of epoch {0} has joined with the minimum bond: sign a set of eligible "
        "validators."
    ),
    "RewardsDistributorInvalidProof": (
        "The proof does not match the active rewards root: use the rewards tree of the active epoch "
        "(`dolphin chain status` shows its root)."
    ),
    "RewardsDistributorRootLocked": "The root of epoch {0} can be activated from {t1}.",
    "RewardsDistributorRootNotPending": "Epoch {0} has no pending root (not proposed, revoked or activated).",
    "RewardsDistributorExpired": "The signatures expired at {t0}: have the validators sign a new deadline.",
    "RewardsDistributorDeadlineTooFar": "Signatures may live at most 7 days: sign a deadline before {t1}.",
    "RewardsDistributorValidatorSetMismatch": (
        "Epoch {0}'s root was signed with another next validator set: activate it with the set from its "
        "RootProposed event."
    ),
    "RewardsDistributorUnderfunded": (
        "The rewards pool holds {p1} POD but the root still owes {p0}: fund the pool before activating."
    ),
    "RewardsDistributorTotalExceeded": (
        "Claims would total {p0} POD, past the active root's signed total of {p1}: the tree does not match "
        "its root's total; ask the settlers."
    ),
    "RewardsDistributorEpochAlreadyProposed": "A root for epoch {0} was proposed already.",
    "RewardsDistributorEpochNotNewer": "Epoch {0} is not after the active epoch {1}.",
    "RewardsDistributorTotalDecreased": "Cumulative totals never fall: the new total {0} is below {1}.",
    "CreditsZeroAmount": "The amount must be positive.",
    "CreditsInsufficientCredit": "Your credit is {u1} lUSD, less than the {u2} asked for.",
    "CreditsNoWithdrawalRequest": (
        "Request a withdrawal first with `dolphin chain credits withdraw AMOUNT`, then complete it with "
        "`dolphin chain credits withdraw` once it unlocks."
    ),
    "CreditsWithdrawalLocked": "Your withdrawal unlocks at {t0}: run `dolphin chain credits withdraw` then.",
    "AccessControlUnauthorizedAccount": "This account lacks role {1}, which only governance grants.",
    "OwnableUnauthorizedAccount": "Only the owner (the governance timelock) may do this.",
}


def hint_for(error: str | None, args: Sequence[Any], now: int | None = None) -> str | None:
    """The hint for custom error `error` with `args` (times shown relative to chain time `now`)."""
    template = HINTS.get(error or "")
    if template is None:
        return None
    named: dict[str, str] = {}
    for i, arg in enumerate(args):
        if isinstance(arg, int) and not isinstance(arg, bool):
            named[f"t{i}"] = format_time(arg, now) if arg <= _LAST_FORMATTABLE_TIME else str(arg)
            named[f"p{i}"] = format_units(arg, POD_DECIMALS)
            named[f"u{i}"] = format_units(arg, USD_DECIMALS)
    shown = ["0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args]
    try:
        return template.format(*shown, **named)
    except (IndexError, KeyError):  # arguments unlike the table's (another contract's same-named error)
        return None


# ---------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class AccountStatus:
    """Everything about one account, read at one block."""

    address: str
    block: int
    chain_time: int
    eth: int
    pod: int
    usd: int
    staked_shares: int
    staked_value: int
    cooldown_start: int
    cooldown_shares: int
    active_bond_shares: int
    active_bond_value: int
    thawing_shares: int
    unbond_requests: tuple[tuple[int, int, int], ...]
    """(request id, unlock time, shares) of every open unbond request."""
    validator_joined: bool
    """Opted in to being elected (ValidatorQuorum.joinValidators)."""
    validator_weight: int
    """Weight in the current validator set (0: not a member)."""
    credit: int
    credit_withdrawal: tuple[int, int]
    """(amount, unlock time) of the pending credits withdrawal; zeros when none."""
    rewards_claimed: int
    active_root: tuple[int, str, int]
    """(epoch, root hex, cumulative total) that claims are proven against."""


@dataclass(frozen=True)
class MoneyStatus:
    """Where the network's revenue went, read at one block: what Credits debited, what waits in the Buyback,
    the POD it bought back, and what one stkPOD is worth (its assets per share, which buybacks raise)."""

    block: int
    revenue: int
    """Everything Credits has debited (payment token units)."""
    awaiting_buyback: int
    """Payment token the Buyback holds, not swapped yet."""
    pod_bought_back: int
    """POD wei bought by all buybacks."""
    share_price: int
    """POD wei one whole stkPOD (10**24 shares) redeems for."""


@dataclass(frozen=True)
class ValidatorSet:
    """A validator set as ValidatorQuorum holds it and EpochRoot signs it: members ascending by address,
    weights in stkPOD shares, and the epoch whose root installed it (0: the genesis set)."""

    members: tuple[str, ...]
    weights: tuple[int, ...]
    epoch: int = 0

    def __post_init__(self) -> None:
        if not self.members or len(self.members) != len(self.weights):
            raise ClientError("a validator set names at least one member, each with one weight")
        keys = [int(m, 16) for m in self.members]
        if keys != sorted(set(keys)) or any(w <= 0 for w in self.weights):
            raise ClientError(
                "a validator set lists distinct members in ascending order with positive weights"
            )

    @classmethod
    def of(cls, weights: Mapping[str, int], epoch: int = 0) -> ValidatorSet:
        """The set of `weights` ({address: weight}), put in the contract's order."""
        ordered = sorted(((checked_address(a), w) for a, w in weights.items()), key=lambda i: int(i[0], 16))
        return cls(tuple(a for a, _ in ordered), tuple(w for _, w in ordered), epoch)

    @property
    def total(self) -> int:
        return sum(self.weights)


@dataclass(frozen=True)
class ClaimResult:
    amount: int
    bonded: bool
    bonus: int = 0
    shares: int = 0


# ---------------------------------------------------------------------------------------------- client


class ChainClient:
    """One account's view of a deployed system: reads, and transactions signed with `key`."""

    def __init__(self, rpc_url: str, deployment: Deployment, key: str | bytes | None = None):
        """Connect to `rpc_url` (ChainUnavailable if nothing answers) and bind `deployment`'s contracts.

        `key` is the hex private key that signs transactions (read-only use without it). Raises
        DeploymentError unless the deployment is on this chain with its code in place.
        """
        from eth_account import Account

        self.rpc_url = rpc_url
        self.w3 = connect(rpc_url)
        self.deployment = deployment
        check_deployment(self.w3, deployment)
        try:
            self.account = Account.from_key(key) if key is not None else None
        except (ValueError, TypeError) as exc:
            # The exception text could echo the key: say only what is wrong.
            raise ClientError("the private key is not 32 bytes of hex; check --key-file") from exc
        self.contracts = {
            name: self.w3.eth.contract(address=deployment.address(name), abi=artifact().abi)
            for name, artifact in _BINDINGS.items()
        }

    @property
    def address(self) -> str:
        """The signing account's address; ClientError when the client has no key."""
        return self._signer().address

    # ------------------------------------------------------------------ plumbing

    # ---- each contract's typed reads (chain.areas): what the floors above use instead of `call`
    bonding = areas.of(areas.Bonding)
    credits = areas.of(areas.Credits)
    slashing = areas.of(areas.Slashing)
    staked_pod = areas.of(areas.StakedPod)
    buyback = areas.of(areas.Buyback)
    validator_quorum = areas.of(areas.ValidatorQuorum)
    rewards_distributor = areas.of(areas.RewardsDistributor)
    payment_token = areas.of(areas.PaymentToken)

    def call(
        self, contract: str, function: str, *args: Any, block: int | str = "latest", sender: str | None = None
    ) -> Any:
        """A view call (or a simulated transaction from `sender`), retried while the node does not answer;
        reverts come back explained."""
        bound = getattr(self.contracts[contract].functions, function)(*args)
        options = {"from": sender} if sender else {}
        return self._explained(
            lambda: read(
                lambda: bound.call(options, block_identifier=block),
                f"{contract}.{function}",
                rpc_url=self.rpc_url,
            )
        )

    def transact(self, contract: str, function: str, *args: Any) -> Any:
        """Send one transaction from this account; returns the receipt. Reverts come back explained."""
        bound = getattr(self.contracts[contract].functions, function)(*args)
        return self._explained(lambda: send(self.w3, self._signer(), bound, f"{contract}.{function}"))

    def chain_time(self) -> int:
        return read(lambda: self.w3.eth.get_block("latest")["timestamp"], "reading the latest block")

    def events(
        self,
        contract: str,
        event: str,
        argument_filters: Mapping[str, Any] | None = None,
        to_block: int | str = "latest",
    ) -> list[Any]:
        """Logs of `event` since the deployment's first block."""
        emitted = getattr(self.contracts[contract].events, event)
        return read(
            lambda: emitted.get_logs(
                from_block=self.deployment.first_block,
                to_block=to_block,
                argument_filters=dict(argument_filters or {}),
            ),
            f"reading {contract}.{event} events",
        )

    def _signer(self):
        if self.account is None:
            raise ClientError("this needs an account: pass --key-file (or set DOLPHIN_KEY_FILE)")
        return self.account

    def _wallet(self) -> EthAccount:
        """Our account's key, for EIP-712 signatures."""
        return EthAccount(bytes(self._signer().key))

    def _explained(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except ExplainedRevert:
            raise
        except ContractRevert as exc:
            now = self.chain_time()
            raise ExplainedRevert(
                str(exc), exc.error, exc.error_args, hint_for(exc.error, exc.error_args, now)
            ) from exc

    def _approve(self, token: str, spender: str, amount: int) -> None:
        spender_address = self.deployment.address(spender)
        if self.call(token, "allowance", self.address, spender_address) < amount:
            self.transact(token, "approve", spender_address, amount)

    # ------------------------------------------------------------------ staking (StakedPOD)

    def stake(self, amount: int) -> int:
        """Deposit `amount` POD wei into the vault; returns the stkPOD shares minted."""
        self._approve("POD", "StakedPOD", amount)
        receipt = self.transact("StakedPOD", "deposit", amount, self.address)
        return self._event_arg(receipt, "StakedPOD", "Deposit", "shares")

    def cooldown(self) -> tuple[int, int]:
        """Start (or restart) the cooldown; returns (unlock time, shares covered)."""
        receipt = self.transact("StakedPOD", "cooldown")
        event = self._logs(receipt, "StakedPOD", "CooldownStarted")[0]["args"]
        return event["start"] + self.call("StakedPOD", "COOLDOWN_PERIOD"), event["shares"]

    def redeem(self, amount: int | None = None) -> int:
        """Redeem `amount` POD wei (None: every share the cooldown covers); returns the POD paid out."""
        me = self.address
        if amount is None:
            _, covered = self.call("StakedPOD", "cooldownOf", me)
            # With no cooldown, asking for the whole balance lets the vault say why it refuses.
            shares = covered or self.call("StakedPOD", "balanceOf", me)
            if shares == 0:
                raise ClientError("you hold no stkPOD: stake first with `dolphin chain stake AMOUNT`")
            receipt = self.transact("StakedPOD", "redeem", shares, me, me)
        else:
            receipt = self.transact("StakedPOD", "withdraw", amount, me, me)
        return self._event_arg(receipt, "StakedPOD", "Withdraw", "assets")

    # ------------------------------------------------------------------ bonding

    def bond(self, amount: int | None = None) -> int:
        """Bond stkPOD worth `amount` POD wei (None: all of this account's stkPOD); returns shares bonded."""
        shares = self._shares_for(amount, self.call("StakedPOD", "balanceOf", self.address), "stkPOD")
        self._approve("StakedPOD", "Bonding", shares)
        self.transact("Bonding", "bond", shares)
        return shares

    def unbond(self, amount: int | None = None) -> tuple[int, int, int]:
        """Start thawing bond worth `amount` POD wei (None: all); returns (request id, unlock, shares)."""
        shares = self._shares_for(amount, self.call("Bonding", "activeBondOf", self.address), "active bond")
        receipt = self.transact("Bonding", "requestUnbond", shares)
        event = self._logs(receipt, "Bonding", "UnbondRequested")[0]["args"]
        return event["requestId"], event["unlockTime"], event["shares"]

    def unbond_requests(self, account: str | None = None) -> list[tuple[int, int, int]]:
        """(request id, unlock time, shares) of each open unbond request of `account` (default: ours)."""
        account = account or self.address
        ids = sorted(
            {
                log["args"]["requestId"]
                for log in self.events("Bonding", "UnbondRequested", {"account": account})
            }
        )
        requests = []
        for request_id in ids:
            owner, unlock, shares = self.call("Bonding", "unbondRequest", request_id)
            if owner == account:
                requests.append((request_id, unlock, shares))
        return requests

    def withdraw_unbonded(self, request_id: int | None = None) -> list[tuple[int, int]]:
        """Withdraw thawed request `request_id` (None: every thawed one); returns (id, shares) paid."""
        if request_id is not None:
            receipt = self.transact("Bonding", "withdrawUnbonded", request_id)
            return [(request_id, self._event_arg(receipt, "Bonding", "UnbondWithdrawn", "shares"))]
        requests = self.unbond_requests()
        if not requests:
            raise ClientError("no open unbond requests: start one with `dolphin chain unbond AMOUNT`")
        now = self.chain_time()
        thawed = [r for r in requests if r[1] <= now]
        if not thawed:
            first = min(unlock for _, unlock, _ in requests)
            raise ClientError(
                f"none of your {len(requests)} unbond requests has thawed; the first unlocks at "
                f"{format_time(first, now)}: run `dolphin chain withdraw` then"
            )
        return [self.withdraw_unbonded(request_id)[0] for request_id, _, _ in thawed]

    def join_validators(self) -> int:
        """Opt in to being elected validator; returns the active bond (stkPOD shares) an election weighs."""
        self.transact("ValidatorQuorum", "joinValidators")
        return self.bonding.active_bond_of(self.address)

    def leave_validators(self) -> None:
        """Opt out of being elected (a member stays in the current set until the next one is installed)."""
        self.transact("ValidatorQuorum", "leaveValidators")

    def validator_set(self, block: int | str = "latest") -> ValidatorSet:
        """The current validator set: members, weights and the epoch whose root installed it."""
        members, weights = self.call("ValidatorQuorum", "validators", block=block)
        epoch = self.call("ValidatorQuorum", "validatorSetEpoch", block=block)
        return ValidatorSet(tuple(members), tuple(weights), epoch)

    def quorum_rule(self) -> QuorumRule:
        """The current validator set's weights and ValidatorQuorum's fraction: when signers are a quorum."""
        current = self.validator_set()
        numerator, denominator = self.validator_quorum.quorum()
        weights = {bytes.fromhex(m[2:]): w for m, w in zip(current.members, current.weights, strict=True)}
        return QuorumRule(weights, numerator, denominator)

    def register_node(self, peer_id_hash: bytes) -> OperatorBinding:
        """Bind the node whose libp2p peer id hashes to `peer_id_hash` to this (operator) account; returns
        the signed binding, which the node shows in its heartbeats."""
        nonce = self.call("Bonding", "nonces", self.address)
        binding = eth_sign(
            OperatorBinding,
            self._wallet(),
            self.domain("Bonding"),
            operator=bytes.fromhex(self.address[2:]),
            peer_id_hash=peer_id_hash,
            nonce=nonce,
        )
        self.transact("Bonding", "registerNode", self.address, peer_id_hash, nonce, binding.signature)
        return binding

    def unregister_node(self, peer_id_hash: bytes) -> None:
        """Remove a node this operator registered."""
        self.transact("Bonding", "unregisterNode", peer_id_hash)

    def _shares_for(self, amount: int | None, available: int, what: str) -> int:
        if amount is None:
            if available == 0:
                raise ClientError(f"no {what} to use: see `dolphin chain status`")
            return available
        # Rounded down, so bonding "all I staked" by its POD value never asks for a share more than held.
        return self.call("StakedPOD", "convertToShares", amount)

    # ------------------------------------------------------------------ rewards

    def domain(self, contract: str):
        """The EIP-712 domain ("Dolphin Network", "1") of `contract` on this chain."""
        from protocols.eth import TypedDomain

        return TypedDomain(
            "Dolphin Network",
            "1",
            self.deployment.chain_id,
            bytes.fromhex(self.deployment.address(contract)[2:]),
        )

    def sign_epoch_root(
        self, epoch: int, tree: RewardsTree, deadline: int, next_set: ValidatorSet | None = None
    ) -> bytes:
        """This validator's EIP-712 signature of EpochRoot(epoch, tree root, tree total, next set, deadline).

        `next_set` is the validator set the root elects for the following epochs; None carries the current
        set forward (what settlers sign until the election elects anyone).
        """
        domain = self.domain("RewardsDistributor")
        next_set = next_set or self.validator_set()
        return epoch_root_signature(self._wallet(), domain, epoch, tree, deadline, next_set).signature

    def propose_root(
        self,
        epoch: int,
        tree: RewardsTree,
        deadline: int,
        signatures: Sequence[bytes],
        next_set: ValidatorSet | None = None,
    ) -> int:
        """Relay validators' signatures of EpochRoot (as `sign_epoch_root` made them, with the same
        `next_set`); returns the time from which the root can be activated. The signatures are put in the
        quorum's order (ascending signer address, recovered here)."""
        next_set = next_set or self.validator_set()
        digest = epoch_root_digest(self.domain("RewardsDistributor"), epoch, tree, deadline, next_set)
        ordered = self._quorum_ordered(digest, "EpochRoot", signatures)
        proposal = (epoch, tree.root, tree.total, list(next_set.members), list(next_set.weights), deadline)
        receipt = self.transact("RewardsDistributor", "proposeRoot", proposal, ordered)
        return self._event_arg(receipt, "RewardsDistributor", "RootProposed", "activatesAt")

    def slash(self, decision: tuple, signatures: Sequence[bytes]) -> Any:
        """Submit a quorum-signed StrikeDecision (its fields in the contract's order); returns the receipt."""
        return self.transact("Slashing", "slash", decision, list(signatures))

    def activate_root(self, epoch: int) -> ValidatorSet:
        """Activate the pending root of `epoch`, installing the next validator set it was signed with (read
        from its RootProposed event); returns that set as installed."""
        proposed = self.events("RewardsDistributor", "RootProposed", {"epoch": epoch})
        if not proposed:
            raise ClientError(f"no root was proposed for epoch {epoch}")
        args = proposed[-1]["args"]
        self.transact("RewardsDistributor", "activateRoot", epoch, args["validators"], args["weights"])
        return self.validator_set()

    def root_status(self, epoch: int) -> tuple[str, int]:
        """(status, activatesAt) of the root proposed for `epoch`: status is "none", "pending", "revoked" or
        "activated" (RewardsDistributor.RootStatus)."""
        proposed = self.call("RewardsDistributor", "proposedRoot", epoch)
        return ("none", "pending", "revoked", "activated")[proposed[4]], proposed[3]

    def claim(self, tree: RewardsTree, *, bonded: bool = False) -> ClaimResult:
        """Claim this account's unclaimed rewards from `tree` (which must be the active root's), as liquid
        POD or, with `bonded`, staked and bonded with the bonus."""
        me = self.address
        epoch, root = self.rewards_distributor.active_root()
        if root != tree.root:
            raise ClientError(
                f"the rewards tree's root 0x{tree.root.hex()} is not the active root 0x{root.hex()} "
                f"(epoch {epoch}): use the tree of the active epoch, or wait until the new root is activated"
            )
        if me not in tree.amounts:
            raise ClientError(f"{me} has no rewards in this tree")
        entry = tree.claim(me)
        claimed = self.call("RewardsDistributor", "claimedOf", me)
        if entry.amount <= claimed:
            raise ClientError(
                f"nothing to claim: {format_units(claimed, POD_DECIMALS)} POD of this tree's "
                f"{format_units(entry.amount, POD_DECIMALS)} were claimed already"
            )
        proof = list(entry.proof)
        if bonded:
            receipt = self.transact("RewardsDistributor", "claimBonded", entry.amount, proof)
            args = self._logs(receipt, "RewardsDistributor", "ClaimedBonded")[0]["args"]
            return ClaimResult(args["amount"], True, args["bonus"], args["shares"])
        receipt = self.transact("RewardsDistributor", "claim", entry.amount, proof)
        return ClaimResult(self._event_arg(receipt, "RewardsDistributor", "Claimed", "amount"), False)

    # ------------------------------------------------------------------ credits

    def credits_deposit(self, amount: int, user: str | None = None) -> int:
        """Deposit `amount` payment-token units as credit, ours or `user`'s (`depositFor`: a validator
        funding its challenge wallets, a gateway topping up a user); returns that credit now."""
        self._approve("PaymentToken", "Credits", amount)
        if user is None:
            self.transact("Credits", "deposit", amount)
            return self.credits.credit_of(self.address)
        self.transact("Credits", "depositFor", checked_address(user), amount)
        return self.credits.credit_of(checked_address(user))

    def credits_request_withdrawal(self, amount: int) -> int:
        """Ask to withdraw `amount` of credit; returns the time it unlocks."""
        receipt = self.transact("Credits", "requestWithdrawal", amount)
        return self._event_arg(receipt, "Credits", "WithdrawalRequested", "unlockTime")

    def credits_withdraw(self) -> int:
        """Complete the unlocked withdrawal request; returns what was paid."""
        receipt = self.transact("Credits", "withdraw")
        return self._event_arg(receipt, "Credits", "Withdrawn", "amount")

    def price_of(self, model: bytes) -> int:
        """What a million tokens of `model` cost, in the payment token's smallest units (Credits.priceOf)."""
        return self.credits.price_of(model)

    def sign_debit_batch(
        self, batch_id: int, users: Sequence[bytes], amounts: Sequence[int], deadline: int
    ) -> bytes:
        """This validator's EIP-712 signature of CreditDebitBatch(batchId, users, amounts, deadline)."""
        domain = self.domain("Credits")
        return debit_batch_signature(self._wallet(), domain, batch_id, users, amounts, deadline).signature

    def settle_debits(
        self,
        batch_id: int,
        users: Sequence[bytes],
        amounts: Sequence[int],
        deadline: int,
        signatures: Sequence[bytes],
    ) -> int:
        """Relay a quorum's signatures of a debit batch (put in the quorum's order here); returns the total
        debited, which Credits sends to the Buyback."""
        digest = debit_batch_digest(self.domain("Credits"), batch_id, users, amounts, deadline)
        ordered = self._quorum_ordered(digest, "CreditDebitBatch", signatures)
        addresses = [self.w3.to_checksum_address("0x" + user.hex()) for user in users]
        receipt = self.transact(
            "Credits", "settleDebits", batch_id, addresses, list(amounts), deadline, ordered
        )
        return self._event_arg(receipt, "Credits", "BatchSettled", "total")

    @staticmethod
    def _quorum_ordered(digest: bytes, what: str, signatures: Sequence[bytes]) -> list[bytes]:
        """`signatures` of the EIP-712 `digest` (of a `what`), ordered by signer as
        ValidatorQuorum.checkQuorum wants."""
        from protocols.errors import ProtocolError
        from protocols.eth import recover_digest

        signers = {}
        for signature in signatures:
            try:
                signers[recover_digest(digest, bytes(signature))] = bytes(signature)
            except ProtocolError as exc:
                raise ClientError(f"a signature does not sign this {what}: {exc}") from exc
        return quorum_order(signers)

    # ------------------------------------------------------------------ buyback (keepers)

    def buyback_observe(self) -> None:
        """Record a TWAP observation (keepers only, at most once per window)."""
        self.transact("Buyback", "observe")

    def buy_back(self, amount_in: int, deadline: int, *, min_pod_out: int = 0) -> tuple[int, int]:
        """Swap `amount_in` of the Buyback's revenue for POD within its TWAP guard and at least `min_pod_out`
        (keepers only); returns (amount in, POD bought)."""
        receipt = self.transact("Buyback", "buyback", amount_in, min_pod_out, deadline)
        args = self._logs(receipt, "Buyback", "BoughtBack")[0]["args"]
        return args["amountIn"], args["podOut"]

    def has_role(self, contract: str, role: str, account: str | None = None) -> bool:
        """Whether `account` (default: ours) holds `role` (e.g. "KEEPER_ROLE") on `contract`."""
        role_id = self.call(contract, role)
        return self.call(contract, "hasRole", role_id, checked_address(account or self.address))

    # ------------------------------------------------------------------ status

    def status(self, account: str | None = None) -> AccountStatus:
        """Balances, stake, bond, validator, credit and rewards of `account` (default: ours), at one block."""

        who = checked_address(account) if account else self.address
        block = read(lambda: self.w3.eth.block_number, "reading the block number")

        def at(contract: str, function: str, *args: Any) -> Any:
            return self.call(contract, function, *args, block=block)

        shares = at("StakedPOD", "balanceOf", who)
        bond = at("Bonding", "activeBondOf", who)
        start, covered = at("StakedPOD", "cooldownOf", who)
        epoch, root, total = at("RewardsDistributor", "activeRoot")
        return AccountStatus(
            address=who,
            block=block,
            chain_time=read(lambda: self.w3.eth.get_block(block)["timestamp"], "reading a block"),
            eth=read(lambda: self.w3.eth.get_balance(who, block), "reading a balance"),
            pod=at("POD", "balanceOf", who),
            usd=at("PaymentToken", "balanceOf", who),
            staked_shares=shares,
            staked_value=at("StakedPOD", "convertToAssets", shares),
            cooldown_start=start,
            cooldown_shares=covered,
            active_bond_shares=bond,
            active_bond_value=at("StakedPOD", "convertToAssets", bond),
            thawing_shares=at("Bonding", "thawingOf", who),
            unbond_requests=tuple(self.unbond_requests(who)),
            validator_joined=at("ValidatorQuorum", "hasJoined", who),
            validator_weight=at("ValidatorQuorum", "weightOf", who),
            credit=at("Credits", "creditOf", who),
            credit_withdrawal=tuple(at("Credits", "withdrawalRequestOf", who)),
            rewards_claimed=at("RewardsDistributor", "claimedOf", who),
            active_root=(epoch, "0x" + bytes(root).hex(), total),
        )

    def money_status(self) -> MoneyStatus:
        """Revenue, buybacks and the stkPOD share price (see MoneyStatus), at the latest block."""
        block = read(lambda: self.w3.eth.block_number, "reading the block number")
        bought = sum(log["args"]["podOut"] for log in self.events("Buyback", "BoughtBack", to_block=block))
        return MoneyStatus(
            block=block,
            revenue=self.call("Credits", "totalRevenue", block=block),
            awaiting_buyback=self.call(
                "PaymentToken", "balanceOf", self.deployment.address("Buyback"), block=block
            ),
            pod_bought_back=bought,
            share_price=self.call("StakedPOD", "convertToAssets", 10**24, block=block),
        )

    def _logs(self, receipt: Any, contract: str, event: str) -> list[Any]:
        """The `event` logs that `contract` itself emitted in the transaction of `receipt`."""
        from web3.logs import DISCARD

        address = self.contracts[contract].address
        emitted = getattr(self.contracts[contract].events, event)()
        return [log for log in emitted.process_receipt(receipt, errors=DISCARD) if log["address"] == address]

    def _event_arg(self, receipt: Any, contract: str, event: str, argument: str) -> Any:
        logs = self._logs(receipt, contract, event)
        if not logs:
            raise ChainError(
                f"{contract} emitted no {event} event in transaction {receipt.transactionHash.hex()}"
            )
        return logs[-1]["args"][argument]


def read_key_file(path: Path) -> str:
    """The hex private key in `path` (one line, 0x optional). The key itself never appears in errors.

    As ssh does with private keys, a file other users may read or write (mode beyond 0600) is refused:
    whoever reads it owns the wallet."""
    try:
        mode = os.stat(path).st_mode & 0o777
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ClientError(f"cannot read the key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ClientError(
            f"permissions {mode:04o} for the key file {path} are too open: other users could read it; "
            f"run `chmod 600 {path}`"
        )
    digits = text.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ClientError(f"{path} does not hold a private key (64 hex digits, 0x optional)")
    return "0x" + digits


VALIDATOR_BOND = 150_000 * 10**18  # POD: the dev genesis validators' bond, above the 100k minimum


def bond_validators(clients: Sequence[ChainClient], amount: int = VALIDATOR_BOND) -> None:
    """Stake and bond `amount` POD for each client's account and opt in to validating, so that roots can
    carry the genesis set forward (its members must pass the installation checks like anyone)."""
    for client in clients:
        client.stake(amount)
        client.bond()
        client.join_validators()
