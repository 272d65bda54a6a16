"""Election: the validator set every peer computes from the same chain state (docs/contracts.md, "The
validator set"; docs/rewards.md steps 6 and 12).

At each epoch close the settlers elect the set that the epoch's root installs (`sign_epoch_root(...,
next_set=)`, activated by `activate_root`). A candidate is elected when it

- opted in (`ValidatorQuorum.joinValidators`, read at the snapshot block),
- is validator-eligible at this close: the reward engine's `validator_eligible` (boost-eligible, an
  active bond of at least `validator_min_bond`, and at least 13 weeks of earnings bonded to enter or 10 to
  stay, its hysteresis carried in the engine's state),
- has earned for 13 weeks: the engine has closed at least `validator_enter_weeks` weeks of epochs for it.
  The engine's bond test alone is empty for a new account (its weekly earnings are tiny, so any minimum
  bond is "13 weeks" of them); the time cannot be bought,
- and holds active bond shares at the snapshot.

At most `MAX_VALIDATORS` are elected, the heaviest first (ties: the lower address). No account can win the
quorum by itself, and the set never jumps:

- The genesis set (named at deployment) is carried forward unchanged until the elected set is large
  enough: at least `MIN_ELECTED` members and `MIN_ELECTED_BOND` bonded between them.
- Target weights are the elected bond shares, scaled to a total of `WEIGHT_SCALE` and capped at
  `MAX_WEIGHT_BPS` of it (the excess is shared among the others by bond: "water-filling"). The cap is
  below the 2/3 quorum, so one account is never a quorum; and it is above one third, so an owner of less
  than a third of the elected bond (however many accounts it splits into) never is either: if any honest
  member is capped, honest weight is at least the cap; if none is, honest weight is at least its bond share.
- Each epoch the set moves towards that target by at most `MAX_CHANGE_BPS` of the total weight (members
  gradually enter, grow, shrink and leave). Every step is a mix of the last set and the target, so what no
  target allows no step allows either.

docs/contracts.md's takeover table is computed with `elect` itself (tests/bench/bench_takeover.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chain.address import checked_address
from chain.client import ChainClient, ValidatorSet
from chain.rewards import POD, EpochClose, RewardParams
from chain.snapshot import ChainSnapshot
from protocols.messages import MAX_VALIDATORS

__all__ = [
    "MAX_CHANGE_BPS",
    "MAX_WEIGHT_BPS",
    "MIN_ELECTED",
    "MIN_ELECTED_BOND",
    "WEIGHT_SCALE",
    "Candidate",
    "candidates_from_close",
    "capped_weights",
    "elect",
    "read_candidates",
]

BPS = 10_000
MIN_ELECTED = 7
"""Members the elected set needs before it replaces the genesis set."""
MIN_ELECTED_BOND = 2_000_000 * POD
"""Bond shares the elected set needs between them before it replaces the genesis set."""
MAX_WEIGHT_BPS = 4_000
"""The most weight one member may hold: below the 2/3 quorum, above one third (see the docstring)."""
MAX_CHANGE_BPS = 1_000
"""The most weight that moves from one set to the next (half the sum of the weight changes)."""
WEIGHT_SCALE = 10**9
"""The total weight of an elected set (the contract caps weights by bond shares: far above this)."""


@dataclass(frozen=True)
class Candidate:
    """What the election reads about one account at an epoch close."""

    address: str
    joined: bool
    eligible: bool
    bond_shares: int


def capped_weights(
    bonds: Mapping[str, int], cap_bps: int = MAX_WEIGHT_BPS, total: int = WEIGHT_SCALE
) -> dict[str, int]:
    """`bonds` scaled to `total`, none above `cap_bps` of it: capped members get the cap, the rest share
    what is left by bond (repeated while sharing pushes another over the cap). Needs len(bonds) × cap ≥ 1."""
    cap = total * cap_bps // BPS
    if len(bonds) * cap < total:
        raise ValueError(f"{len(bonds)} members cannot share the weight with none above {cap_bps} bps")
    capped: set[str] = set()
    while True:
        free = {a: b for a, b in bonds.items() if a not in capped}
        left = total - cap * len(capped)
        free_bond = sum(free.values())
        over = {a for a, b in free.items() if b * left > cap * free_bond}
        if not over:
            weights = {a: cap for a in capped}
            weights.update({a: b * left // free_bond for a, b in free.items()})
            return {a: w for a, w in weights.items() if w > 0}
        capped |= over


def _step(current: Mapping[str, int], target: Mapping[str, int], max_change_bps: int) -> dict[str, int]:
    """`current` (scaled to WEIGHT_SCALE) moved towards `target` by at most max_change_bps of the total."""
    members = set(current) | set(target)
    moved = sum(abs(target.get(a, 0) - current.get(a, 0)) for a in members) // 2
    limit = WEIGHT_SCALE * max_change_bps // BPS
    if moved <= limit:
        return dict(target)
    mixed = {a: current.get(a, 0) + (target.get(a, 0) - current.get(a, 0)) * limit // moved for a in members}
    return {a: w for a, w in mixed.items() if w > 0}


def elect(
    candidates: Iterable[Candidate],
    current: ValidatorSet,
    *,
    epoch: int,
    max_members: int = MAX_VALIDATORS,
    min_elected: int = MIN_ELECTED,
    min_elected_bond: int = MIN_ELECTED_BOND,
    max_change_bps: int = MAX_CHANGE_BPS,
) -> ValidatorSet:
    """The set that epoch `epoch`'s root installs (module docstring): `current` carried forward while the
    elected set is too small, else `current` moved towards the elected set's capped weights. Pure: same
    inputs, same set."""
    elected = sorted(
        (c for c in candidates if c.joined and c.eligible and c.bond_shares > 0),
        key=lambda c: (-c.bond_shares, int(checked_address(c.address), 16)),
    )[:max_members]
    bond = sum(c.bond_shares for c in elected)
    if len(elected) < min_elected or bond < min_elected_bond:
        return ValidatorSet(current.members, current.weights, epoch)
    target = capped_weights({checked_address(c.address): c.bond_shares for c in elected})
    scaled = {
        m: w * WEIGHT_SCALE // current.total for m, w in zip(current.members, current.weights, strict=True)
    }
    moved = _step(scaled, target, max_change_bps)
    if len(moved) > max_members:  # leavers still fading out while newcomers fade in: keep the heaviest
        kept = sorted(moved.items(), key=lambda i: (-i[1], int(i[0], 16)))[:max_members]
        moved = dict(kept)
    return ValidatorSet.of(moved, epoch)


def _seasoned(close: EpochClose, account: str, params: RewardParams) -> bool:
    """Eligible by the engine's snapshot and with `validator_enter_weeks` weeks of epochs closed."""
    result = close.accounts[account]
    weeks = result.state.closed_epochs >= params.validator_enter_weeks * params.n_week
    return result.snapshot.validator_eligible and weeks


def candidates_from_close(
    close: EpochClose,
    joined: Iterable[str],
    bond_shares: Mapping[str, int],
    params: RewardParams | None = None,
) -> list[Candidate]:
    """Every account of `close` as a candidate: eligibility from its new snapshot and its weeks of
    history (module docstring), opt-in from `joined`, weight from `bond_shares` (active bond in stkPOD
    shares at the snapshot). `params` are the close's (default: the defaults)."""
    params = params or RewardParams()
    opted_in = {checked_address(a) for a in joined}
    shares = {checked_address(a): s for a, s in bond_shares.items()}
    return [
        Candidate(
            address=checked_address(account),
            joined=checked_address(account) in opted_in,
            eligible=_seasoned(close, account, params),
            bond_shares=shares.get(checked_address(account), 0),
        )
        for account in close.accounts
    ]


def read_candidates(client: ChainClient, snapshot: ChainSnapshot, close: EpochClose) -> list[Candidate]:
    """The candidates of an epoch close, reading opt-ins and bond shares at the snapshot's block (blocking:
    run it in a thread). Only accounts the close found validator-eligible are read."""
    eligible = [a for a in close.accounts if _seasoned(close, a, snapshot.params)]
    joined = [a for a in eligible if client.validator_quorum.has_joined(a, snapshot.block)]
    shares = {a: client.bonding.active_bond_at(a, snapshot.timepoint) for a in joined}
    return candidates_from_close(close, joined, shares, snapshot.params)
