"""Synthetic operator populations run through the engine: a table and a plot of who gets which boost;
and an operator paying for requests to its own node, to show what base rewards let it get back.

Deterministic for a seed (random.Random, no global state), so a table printed today can be reproduced;
used by `dolphin rewards simulate` and by the reward benchmark.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from chain.errors import RewardsInputError
from chain.rewards.engine import (
    AccountClose,
    AccountEpoch,
    AccountState,
    Competition,
    EpochInput,
    Snapshot,
    close_epoch,
)
from chain.rewards.params import POD, RewardParams

_MULTIPLIERS = (Fraction(1), Fraction(23, 20), Fraction(6, 5), Fraction(5, 4), Fraction(13, 10))


def account_id(index: int) -> str:
    """A synthetic account's ID: an Ethereum address made from its index."""
    return f"0x{index:040x}"


def synthetic_epoch(count: int, seed: int, params: RewardParams) -> dict[str, AccountEpoch]:
    """One epoch's close input for `count` accounts with plausible carried state.

    A mix the engine must handle: new accounts, short histories, unregistered and suspended ones,
    unbonded, partly bonded and over-bonded operators (so the competitive set is large), and a few
    validator-sized bonds. Amounts carry wei-level noise so ratios are not round.
    """
    rng = random.Random(seed)
    n_week = params.n_week
    accounts: dict[str, AccountEpoch] = {}
    for index in range(count):
        daily = rng.randrange(1, 80 * POD)
        base_reward = max(0, int(daily * rng.uniform(0.0, 2.0)))
        roll = rng.random()
        if roll < 0.05:
            state, snapshot = AccountState(), None
        else:
            closed = rng.randrange(1, 40)
            history = tuple(int(daily * rng.uniform(0.0, 2.0)) for _ in range(min(closed, n_week)))
            smoothed = int(daily * n_week * rng.uniform(0.7, 1.3))
            lifetime = sum(history) + rng.randrange(0, 200 * POD)
            multiplier = _MULTIPLIERS[rng.randrange(len(_MULTIPLIERS))]
            state = AccountState(smoothed, lifetime, history, closed, rng.random() < 0.1)
            snapshot = Snapshot(multiplier, max(smoothed, params.earnings_floor))
        bond_roll = rng.random()
        weekly = daily * n_week
        if bond_roll < 0.25:
            bond = 0
        elif bond_roll < 0.55:
            bond = int(weekly * rng.uniform(0.0, params.full_weeks))
        elif bond_roll < 0.95:
            bond = int(weekly * rng.uniform(params.full_weeks, 4 * params.full_weeks))
        else:
            bond = params.validator_min_bond + rng.randrange(0, 50_000 * POD)
        observed = EpochInput(
            base_reward=base_reward,
            registered=rng.random() < 0.97,
            suspended=rng.random() < 0.02,
            active_bond=bond,
        )
        accounts[account_id(index)] = AccountEpoch(observed, state, snapshot)
    return accounts


@dataclass(frozen=True, slots=True)
class OperatorRow:
    """One operator at the end of a simulation: one point of the plot, one line of the table."""

    account: str
    bond: int
    smoothed: int
    weeks_bonded: Fraction
    """w = S / D of the final close."""
    multiplier: Fraction
    tier: int | None
    """Competitive tier s, or None outside an enabled competition."""
    boost_eligible: bool
    validator: bool


@dataclass(frozen=True, slots=True)
class Simulation:
    """The last epoch's rows (sorted by weeks bonded) and competition."""

    rows: tuple[OperatorRow, ...]
    competition: Competition
    epochs: int


def simulate(count: int, seed: int, epochs: int, params: RewardParams) -> Simulation:
    """Run `count` operators with steady earnings and fixed bonds through `epochs` closes.

    Each operator earns around its own daily mean and keeps a bond sized in weeks of that mean
    (0 to 40 weeks), so after the smoothing settles its weeks bonded sit near its target.
    """
    if count < 1 or epochs < 1:
        raise RewardsInputError(
            f"a simulation needs at least one operator and one epoch, got {count}, {epochs}"
        )
    rng = random.Random(seed)
    operators = []
    for index in range(count):
        daily = int(rng.lognormvariate(3.4, 0.5) * POD)  # median about 30 POD a day
        target_weeks = rng.choice((0.0, rng.uniform(0, 13), rng.uniform(13, 40), rng.uniform(13, 40)))
        bond = int(daily * params.n_week * target_weeks)
        operators.append((account_id(index), daily, bond))

    def next_inputs(previous: Mapping[str, AccountClose]) -> dict[str, AccountEpoch]:
        inputs = {}
        for operator, daily, bond in operators:
            observed = EpochInput(int(daily * rng.uniform(0.6, 1.4)), True, False, bond)
            close = previous.get(operator)
            inputs[operator] = (
                AccountEpoch(observed, close.state, close.snapshot) if close else AccountEpoch(observed)
            )
        return inputs

    result = close_epoch(next_inputs({}), params)
    for _ in range(epochs - 1):
        result = close_epoch(next_inputs(result.accounts), params)
    rows = []
    for operator, _, bond in operators:
        close = result.accounts[operator]
        rows.append(
            OperatorRow(
                account=operator,
                bond=bond,
                smoothed=close.state.smoothed,
                weeks_bonded=Fraction(bond, close.snapshot.denominator),
                multiplier=close.snapshot.multiplier,
                tier=close.tier,
                boost_eligible=close.snapshot.boost_eligible,
                validator=close.snapshot.validator_eligible,
            )
        )
    rows.sort(key=lambda row: (row.weeks_bonded, row.account))
    return Simulation(tuple(rows), result.competition, epochs)


def format_table(simulation: Simulation) -> str:
    """The table behind the plot, one operator per line, then the competition's summary."""
    header = (
        f"{'account':<42} {'bond POD':>12} {'E POD/wk':>10} {'weeks':>7} {'multiplier':>10} {'tier':>4} "
        f"{'boost':>5} {'val':>3}"
    )
    lines = [header]
    for row in simulation.rows:
        lines.append(
            f"{row.account:<42} {row.bond / POD:>12.2f} {row.smoothed / POD:>10.2f} "
            f"{float(row.weeks_bonded):>7.2f} {float(row.multiplier):>10.6f} "
            f"{'-' if row.tier is None else row.tier:>4} {'yes' if row.boost_eligible else 'no':>5} "
            f"{'yes' if row.validator else 'no':>3}"
        )
    competition = simulation.competition
    summary = f"after {simulation.epochs} epochs: competitive set N={competition.size}, "
    if competition.enabled:
        summary += (
            f"K={competition.tiers} tiers, L={float(competition.low or 0):.3f} and "
            f"H={float(competition.high or 0):.3f} excess weeks"
        )
    else:
        summary += "competition disabled (too few accounts or earnings)"
    lines.append(summary)
    return "\n".join(lines)


def plot(simulation: Simulation, path: Path, params: RewardParams) -> None:
    """Write a PNG: multiplier against weeks bonded, coloured by competitive tier."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    outside = [row for row in simulation.rows if row.tier is None]
    axis.scatter(
        [float(row.weeks_bonded) for row in outside],
        [float(row.multiplier) for row in outside],
        s=14,
        color="0.6",
        label="not competing",
    )
    tiers = simulation.competition.tiers
    colormap = plt.get_cmap("viridis")
    for tier in range(tiers):
        members = [row for row in simulation.rows if row.tier == tier]
        if members:
            axis.scatter(
                [float(row.weeks_bonded) for row in members],
                [float(row.multiplier) for row in members],
                s=18,
                color=colormap(tier / max(tiers - 1, 1)),
                label=f"tier {tier}",
            )
    axis.axvline(params.full_weeks, color="0.3", linestyle="--", linewidth=1)
    axis.set_xlabel("weeks bonded (active bond / smoothed weekly earnings)")
    axis.set_ylabel("reward multiplier B")
    axis.set_title(f"Reward boost after {simulation.epochs} epochs, {len(simulation.rows)} operators")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------------------------- self-dealing


@dataclass(frozen=True, slots=True)
class SelfDealingRow:
    """One emission setting: what an operator paying its own node gets back per unit spent."""

    emission_revenue_bps: int
    cost: int
    """POD wei value of what it paid per epoch (its spend at the pair's price)."""
    rewards: int
    """POD wei the engine paid it per epoch, steady state (boost included)."""
    returned: Fraction
    """(rewards x (1 + bonded-claim bonus) + the buyback's share of its own payment) / cost."""


def simulate_self_dealing(
    params: RewardParams,
    *,
    spend: int,
    honest_revenue: int,
    pod_per_unit: Fraction,
    bonus_bps: int,
    stake_share: Fraction = Fraction(0),
    emission_bps: tuple[int, ...] = tuple(range(0, 10_001, 1000)),
    honest_operators: int = 20,
    epochs: int = 28,
) -> list[SelfDealingRow]:
    """An operator pays `spend` (payment token units per epoch) for requests to its own node, with
    throwaway client keys and its own credit, beside `honest_revenue` that other clients pay
    `honest_operators` other operators. It bonds far more than anyone (the top competitive tier, so the
    largest multiplier the parameters allow once it is boost-eligible) and claims bonded (`bonus_bps`,
    RewardsDistributor's bonded-claim bonus); `stake_share` is its share of stkPOD, through which the
    buyback of its own payment comes back to it. Each epoch runs through `emission`, `base_rewards` and the
    engine; the row reports the last week's average for each emission setting in `emission_bps`."""
    from chain.rewards.base import PER_MILLION, base_rewards, emission

    dealer = account_id(0)
    honest = [account_id(index + 1) for index in range(honest_operators)]
    rows = []
    for bps in emission_bps:
        setting = dataclasses.replace(params, emission_revenue_bps=bps)
        weekly_pod = int(honest_revenue * pod_per_unit) * params.n_week // max(1, honest_operators)
        bonds = {dealer: 10**9 * POD}
        # Honest operators bond 14 to 33 weeks of their earnings: enough to compete, below the dealer.
        bonds |= {operator: weekly_pod * (14 + index) for index, operator in enumerate(honest)}
        previous: dict[str, AccountClose] = {}
        paid = []
        for _ in range(epochs):
            work = {dealer: spend * PER_MILLION}
            work |= {operator: honest_revenue * PER_MILLION // len(honest) for operator in honest}
            rewards = base_rewards(work, emission(sum(work.values()), pod_per_unit, setting))
            inputs = {}
            for account, bond in bonds.items():
                observed = EpochInput(rewards.get(account, 0), True, False, bond)
                close = previous.get(account)
                inputs[account] = (
                    AccountEpoch(observed, close.state, close.snapshot) if close else AccountEpoch(observed)
                )
            previous = close_epoch(inputs, setting).accounts
            paid.append(previous[dealer].reward)
        week = paid[-params.n_week :]
        reward = sum(week) // len(week)
        cost = int(spend * pod_per_unit)
        returned = (
            (Fraction(reward) * (10_000 + bonus_bps) / 10_000 + stake_share * cost) / cost
            if cost
            else Fraction(0)
        )
        rows.append(SelfDealingRow(bps, cost, reward, returned))
    return rows


def format_self_dealing(rows: list[SelfDealingRow], launch_bps: int) -> str:
    lines = [f"{'emission bps':>12} {'cost POD/epoch':>15} {'rewards POD/epoch':>18} {'returned':>9}"]
    for row in rows:
        mark = "  <- launch" if row.emission_revenue_bps == launch_bps else ""
        lines.append(
            f"{row.emission_revenue_bps:>12} {row.cost / POD:>15.4f} {row.rewards / POD:>18.4f} "
            f"{float(row.returned):>9.3f}{mark}"
        )
    return "\n".join(lines)


def plot_self_dealing(curves: dict[str, list[SelfDealingRow]], path: Path, launch_bps: int) -> None:
    """Write a PNG: what paying one's own node returns per unit spent, against the emission setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for label, rows in curves.items():
        axis.plot(
            [row.emission_revenue_bps for row in rows],
            [float(row.returned) for row in rows],
            marker="o",
            label=label,
        )
    axis.axhline(1.0, color="0.2", linewidth=1)
    axis.axvline(launch_bps, color="0.4", linestyle="--", linewidth=1)
    axis.text(launch_bps, axis.get_ylim()[1], " launch", va="top", fontsize="small")
    axis.set_xlabel("emission_revenue_bps (base rewards as a share of paid revenue)")
    axis.set_ylabel("POD returned per POD spent on one's own node")
    axis.set_title("Self-dealing: what an operator paying its own node gets back")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small", loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
