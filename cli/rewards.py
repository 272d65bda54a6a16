"""`dolphin rewards`: the settler's epoch close and a simulation of the reward boost (docs/rewards.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click

from chain.errors import ChainError
from chain.rewards import RewardParams, close_epoch, decode_document, encode_result
from chain.rewards.simulate import (
    format_self_dealing,
    format_table,
    plot,
    plot_self_dealing,
    simulate,
    simulate_self_dealing,
)


@click.group("rewards")
def group() -> None:
    """Reward boost engine: close an epoch, simulate multipliers."""


@group.command("close-epoch")
@click.argument("input_file", metavar="[IN.json]", type=click.File("rb"), default="-")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the output document here instead of stdout.",
)
def close_epoch_command(input_file: BinaryIO, output: Path | None) -> None:
    """Close an epoch: new state, snapshot and reward per account.

    Reads the exchange document IN.json (stdin when omitted or '-') and writes the output document to
    stdout, or to -o. The format is docs/rewards.md's "Exchange format"; the same input gives the same
    bytes on every settler.
    """
    try:
        params, accounts = decode_document(input_file.read())
        document = encode_result(close_epoch(accounts, params))
    except ChainError as error:
        raise click.ClickException(
            f"{error}\nFix the input document (see docs/rewards.md, 'Exchange format')."
        ) from None
    if output is None:
        sys.stdout.write(document)
        sys.stdout.flush()
    else:
        output.write_text(document, encoding="ascii")


@group.command("simulate")
@click.option(
    "--accounts", "count", type=click.IntRange(1, 100_000), default=100, show_default=True, help="Operators."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same population and table.")
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=21,
    show_default=True,
    help="Epochs to run (7+ to boost).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=Path("rewards-simulation.png"),
    show_default=True,
    help="Where to write the plot (PNG).",
)
@click.option(
    "--self-dealing",
    is_flag=True,
    help="Instead: what an operator paying for requests to its own node gets back, per emission setting.",
)
@click.option(
    "--attacks",
    is_flag=True,
    help="Instead: what ban farming and report sniping cost and return under the award rules.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 10_000),
    default=3,
    show_default=True,
    help="With --attacks: throwaway nodes the attacker gets banned.",
)
@click.option(
    "--bond",
    type=click.FloatRange(0),
    default=20_000.0,
    show_default=True,
    help="With --attacks: POD bonded behind each bonded throwaway node.",
)
@click.option(
    "--spend",
    type=click.FloatRange(0.000001),
    default=100.0,
    show_default=True,
    help="With --self-dealing: lUSD a day it pays its own node.",
)
@click.option(
    "--honest-revenue",
    type=click.FloatRange(0),
    default=1000.0,
    show_default=True,
    help="With --self-dealing: lUSD a day other clients pay other operators.",
)
@click.option(
    "--pod-price",
    type=click.FloatRange(0.000001),
    default=0.1,
    show_default=True,
    help="With --self-dealing: lUSD per POD (the dev chain's pool starts at 0.1).",
)
def simulate_command(
    count: int,
    seed: int,
    epochs: int,
    output: Path,
    self_dealing: bool,
    attacks: bool,
    nodes: int,
    bond: float,
    spend: float,
    honest_revenue: float,
    pod_price: float,
) -> None:
    """Simulate operators: plot the multiplier against weeks bonded.

    A synthetic population with steady earnings and fixed bonds runs through the engine (default
    parameters) for --epochs closes; the PNG shows each operator's multiplier against its weeks bonded,
    coloured by competitive tier, and the table behind it is printed.

    With --self-dealing: an operator pays for requests to its own node with throwaway client keys,
    bonds more than anyone and claims bonded; for each emission setting (base rewards as a share of paid
    revenue) the PNG shows the POD it gets back per POD spent, also counting its stkPOD share of the
    buyback of its own payment (0%, 10%, 25%). Below 1 it loses money (docs/rewards.md, "Base rewards").

    With --attacks: ban farming (getting one's own throwaway nodes banned and reporting them) and report
    sniping under the award rules and the chain's default strike parameters, the attacker holding the
    reporting user and the first striking validator; no attack returns more than it costs
    (docs/rewards.md, "Strikes, bans and awards").
    """
    if attacks:
        _simulate_attacks(nodes, bond)
        return
    params = RewardParams()
    if self_dealing:
        _simulate_self_dealing(params, output, spend, honest_revenue, pod_price)
        return
    simulation = simulate(count, seed, epochs, params)
    plot(simulation, output, params)
    click.echo(format_table(simulation))
    click.echo(f"plot: {output}")


def _simulate_attacks(nodes: int, bond: float) -> None:
    from decimal import Decimal

    from validator.strikes import ban_attack_outcomes

    pod = 10**18
    outcomes = ban_attack_outcomes(
        nodes=nodes,
        bond=int(Decimal(str(bond)) * pod),
        slash_bps=5000,  # Slashing.slashBps at deployment (DeployParams.slash_bps)
        reporter_bps=1000,  # Slashing.reporterRewardBps at deployment
        validator_award=100 * pod,  # Slashing.strikeRules at deployment
        user_award=50 * pod,
    )
    click.echo(f"{'attack':<48} {'cost POD':>14} {'return POD':>14} {'net POD':>14}")
    for outcome in outcomes:
        cost, gain = Decimal(outcome.cost) / pod, Decimal(outcome.gain) / pod
        click.echo(f"{outcome.name:<48} {cost:>14.2f} {gain:>14.2f} {gain - cost:>14.2f}")
    click.echo(
        "A node with no bond forfeits nothing validators can count alike, so catching it pays an award of 0"
        " (docs/rewards.md)."
    )
    if any(outcome.gain > outcome.cost for outcome in outcomes):
        raise click.ClickException("an attack returns more than it costs")


def _simulate_self_dealing(
    params: RewardParams, output: Path, spend: float, honest_revenue: float, pod_price: float
) -> None:
    from fractions import Fraction

    from chain.deploy import USD_UNIT, DeployParams
    from chain.rewards.params import POD

    pod_per_unit = Fraction(POD) / (Fraction(str(pod_price)) * USD_UNIT)
    curves = {}
    for share in (Fraction(0), Fraction(1, 10), Fraction(1, 4)):
        curves[f"{float(share):.0%} of stkPOD"] = simulate_self_dealing(
            params,
            spend=int(Fraction(str(spend)) * USD_UNIT),
            honest_revenue=int(Fraction(str(honest_revenue)) * USD_UNIT),
            pod_per_unit=pod_per_unit,
            bonus_bps=DeployParams().bond_bonus_bps,
            stake_share=share,
        )
    plot_self_dealing(curves, output, params.emission_revenue_bps)
    for label, rows in curves.items():
        click.echo(f"operator holding {label}:")
        click.echo(format_self_dealing(rows, params.emission_revenue_bps))
    click.echo(f"plot: {output}")
