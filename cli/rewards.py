"""`dolphin rewards`: the settler's epoch close and a simulation of the reward boost (docs/rewards.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click

from chain.errors import ChainError
from chain.rewards import RewardParams, close_epoch, decode_document, encode_result
from chain.rewards.simulate import format_table, plot, simulate


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
def simulate_command(count: int, seed: int, epochs: int, output: Path) -> None:
    """Simulate operators: plot the multiplier against weeks bonded.

    A synthetic population with steady earnings and fixed bonds runs through the engine (default
    parameters) for --epochs closes; the PNG shows each operator's multiplier against its weeks bonded,
    coloured by competitive tier, and the table behind it is printed.
    """
    params = RewardParams()
    simulation = simulate(count, seed, epochs, params)
    plot(simulation, output, params)
    click.echo(format_table(simulation))
    click.echo(f"plot: {output}")
