"""Typed reads of each contract, by area, over one `ChainClient`'s connection.

The floors above `chain/` ask `client.bonding.slashable_of(account)`, never `client.call("Bonding",
"slashableOf", …)`: a contract's function names, argument shapes and units stay in this package, and a
renamed function breaks here, not in a daemon. Every read takes `block` (default: the latest) where the
callers read at an epoch's closing block. Reverts and an unreachable chain come back as `ChainClient.call`
raises them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from chain.client import ChainClient

__all__ = [
    "Bonding",
    "Buyback",
    "Credits",
    "PaymentToken",
    "RewardsDistributor",
    "Slashing",
    "StakedPod",
    "ValidatorQuorum",
    "of",
]

Block = int | str
A = TypeVar("A", bound="_Area")


def of(area: type[A]) -> functools.cached_property[A]:
    """A ChainClient attribute: `area` over that client, made on first use."""
    return functools.cached_property(lambda client: area(client))


class _Area:
    contract: ClassVar[str]

    def __init__(self, client: ChainClient) -> None:
        self._client = client

    def _call(self, function: str, *args: Any, block: Block = "latest") -> Any:
        return self._client.call(self.contract, function, *args, block=block)


class Bonding(_Area):
    """Operators' bonds and the nodes bound to them."""

    contract = "Bonding"

    def is_node_of(self, operator: str, peer_id_hash: bytes, block: Block = "latest") -> bool:
        return bool(self._call("isNodeOf", operator, peer_id_hash, block=block))

    def is_slashable_node_of(self, operator: str, peer_id_hash: bytes, block: Block = "latest") -> bool:
        return bool(self._call("isSlashableNodeOf", operator, peer_id_hash, block=block))

    def active_bond_of(self, operator: str, block: Block = "latest") -> int:
        """stkPOD shares actively bonded (not thawing)."""
        return int(self._call("activeBondOf", operator, block=block))

    def active_bond_at(self, account: str, timepoint: int) -> int:
        """stkPOD shares actively bonded at `timepoint` (the snapshot an election reads)."""
        return int(self._call("activeBondAt", account, timepoint))

    def slashable_of(self, operator: str, block: Block = "latest") -> int:
        """stkPOD shares a slash can take: the active bond and what is still thawing."""
        return int(self._call("slashableOf", operator, block=block))


class Credits(_Area):
    """API users' prepaid credit (in the payment token's smallest units) and models' prices."""

    contract = "Credits"

    def credit_of(self, user: str) -> int:
        return int(self._call("creditOf", user))

    def spendable_of(self, user: str) -> int:
        """Credit less a pending withdrawal request: what nodes may serve against."""
        return int(self._call("spendableOf", user))

    def price_of(self, model: bytes, block: Block = "latest") -> int:
        """The price of a million tokens of `model` (its id)."""
        return int(self._call("priceOf", model, block=block))

    def is_settled(self, batch_id: bytes) -> bool:
        """Whether the debit batch `batch_id` has landed."""
        return bool(self._call("isSettled", batch_id))


class Slashing(_Area):
    """Strike rules, the share a slash takes, and which evidence was used."""

    contract = "Slashing"

    def slash_bps(self, block: Block = "latest") -> int:
        return int(self._call("slashBps", block=block))

    def strike_rules(self, block: Block = "latest") -> tuple:
        return tuple(self._call("strikeRules", block=block))

    def reporter_reward_bps(self, block: Block = "latest") -> int:
        return int(self._call("reporterRewardBps", block=block))

    def is_evidence_used(self, offender: str, evidence_hash: bytes) -> bool:
        return bool(self._call("isEvidenceUsed", offender, evidence_hash))


class StakedPod(_Area):
    """The stkPOD vault."""

    contract = "StakedPOD"

    def convert_to_assets(self, shares: int, block: Block = "latest") -> int:
        """POD that `shares` stkPOD are worth."""
        return int(self._call("convertToAssets", shares, block=block))

    def cooldown_period(self) -> int:
        return int(self._call("COOLDOWN_PERIOD"))

    def rewards_vesting_period(self) -> int:
        return int(self._call("REWARDS_VESTING_PERIOD"))


class Buyback(_Area):
    """The revenue's swap into POD: its TWAP observations and bounds."""

    contract = "Buyback"

    def twap_minimum_out(self, amount: int) -> int:
        return int(self._call("twapMinimumOut", amount))

    def max_slippage_bps(self) -> int:
        return int(self._call("maxSlippageBps"))

    def max_swap_amount(self) -> int:
        return int(self._call("maxSwapAmount"))

    def observations(self) -> tuple:
        """(older, newer) price observations, each as the contract stores it (the timestamp second)."""
        return tuple(self._call("observations"))

    def twap_window(self) -> int:
        return int(self._call("twapWindow"))


class ValidatorQuorum(_Area):
    """Who may validate, and the quorum fraction."""

    contract = "ValidatorQuorum"

    def members(self) -> list[str]:
        members, _weights = self._call("validators")
        return list(members)

    def quorum(self) -> tuple[int, int]:
        numerator, denominator = self._call("quorum")
        return int(numerator), int(denominator)

    def has_joined(self, account: str, block: Block = "latest") -> bool:
        return bool(self._call("hasJoined", account, block=block))


class RewardsDistributor(_Area):
    """Epoch roots."""

    contract = "RewardsDistributor"

    def active_root(self, block: Block = "latest") -> tuple[int, bytes]:
        """(epoch, root) of the active root; epoch 0 while none is."""
        epoch, root, _ = self._call("activeRoot", block=block)
        return int(epoch), bytes(root)

    def proposed_root(self, epoch: int) -> tuple:
        """The root proposed for `epoch` and its state, as the contract returns them."""
        return tuple(self._call("proposedRoot", epoch))

    def claimed_of(self, account: str, block: Block = "latest") -> int:
        """What `account` has claimed of its rewards so far."""
        return int(self._call("claimedOf", account, block=block))


class PaymentToken(_Area):
    """The stablecoin credit is paid in."""

    contract = "PaymentToken"

    def balance_of(self, account: str) -> int:
        return int(self._call("balanceOf", account))
