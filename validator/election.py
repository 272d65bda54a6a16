"""Election: the validator set every peer computes from the same chain state (docs/contracts.md, "The
validator set"; docs/rewards.md steps 6 and 12).

At each epoch close the settlers elect the set that the epoch's root installs (`sign_epoch_root(...,
next_set=)`, activated by `activate_root`). A candidate is elected when it

- opted in (`ValidatorQuorum.joinValidators`, read at the snapshot block),
- is validator-eligible at this close: the reward engine's `validator_eligible` (boost-eligible, an
  active bond of at least `validator_min_bond`, and at least 13 weeks of earnings bonded to enter or 10 to
  stay, its hysteresis carried in the engine's state),
- and holds active bond shares at the snapshot, its weight (stkPOD shares, which the chain caps by the
  bond at installation anyway).

At most `MAX_VALIDATORS` are elected, the heaviest first (ties: the lower address). While nobody is
eligible — a new network has no earnings history — the current set is carried forward unchanged (the
genesis set named at deployment, until then). The set changes only at epoch boundaries, because only an
activated root installs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chain.client import ChainClient, ValidatorSet, checked_address
from chain.rewards import EpochClose
from chain.snapshot import ChainSnapshot
from protocols.messages import MAX_VALIDATORS

__all__ = ["Candidate", "candidates_from_close", "elect", "read_candidates"]


@dataclass(frozen=True)
class Candidate:
    """What the election reads about one account at an epoch close."""

    address: str
    joined: bool
    eligible: bool
    bond_shares: int


def elect(
    candidates: Iterable[Candidate],
    current: ValidatorSet,
    *,
    epoch: int,
    max_members: int = MAX_VALIDATORS,
) -> ValidatorSet:
    """The set that epoch `epoch`'s root installs: the eligible candidates weighted by bond shares, or
    `current` carried forward when none is eligible (see the module docstring). Pure: same inputs, same set.
    """
    elected = sorted(
        (c for c in candidates if c.joined and c.eligible and c.bond_shares > 0),
        key=lambda c: (-c.bond_shares, int(checked_address(c.address), 16)),
    )[:max_members]
    if not elected:
        return ValidatorSet(current.members, current.weights, epoch)
    return ValidatorSet.of({c.address: c.bond_shares for c in elected}, epoch)


def candidates_from_close(
    close: EpochClose, joined: Iterable[str], bond_shares: Mapping[str, int]
) -> list[Candidate]:
    """Every account of `close` as a candidate: eligibility from its new snapshot, opt-in from `joined`,
    weight from `bond_shares` (active bond in stkPOD shares at the snapshot)."""
    opted_in = {checked_address(a) for a in joined}
    shares = {checked_address(a): s for a, s in bond_shares.items()}
    return [
        Candidate(
            address=checked_address(account),
            joined=checked_address(account) in opted_in,
            eligible=result.snapshot.validator_eligible,
            bond_shares=shares.get(checked_address(account), 0),
        )
        for account, result in close.accounts.items()
    ]


def read_candidates(client: ChainClient, snapshot: ChainSnapshot, close: EpochClose) -> list[Candidate]:
    """The candidates of an epoch close, reading opt-ins and bond shares at the snapshot's block (blocking:
    run it in a thread). Only accounts the close found validator-eligible are read."""
    eligible = [a for a, result in close.accounts.items() if result.snapshot.validator_eligible]
    joined = [a for a in eligible if client.call("ValidatorQuorum", "hasJoined", a, block=snapshot.block)]
    shares = {a: client.call("Bonding", "activeBondAt", a, snapshot.timepoint) for a in joined}
    return candidates_from_close(close, joined, shares)
