"""`dolphin rewards`: the settler's epoch close and a simulation of the reward boost (spec/rewards.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chain.errors import ChainError
from chain.rewards import close_epoch, decode_document, encode_result


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
def close_epoch_command(input_file, output: Path | None) -> None:  # type: ignore[no-untyped-def]
    """Close an epoch: read the exchange document IN.json (stdin when omitted or '-'), write each
    account's new state, snapshot and reward (stdout unless -o is given).

    The format is spec/rewards.md's "Exchange format"; the same input gives the same bytes on every
    settler.
    """
    try:
        params, accounts = decode_document(input_file.read())
        document = encode_result(close_epoch(accounts, params))
    except ChainError as error:
        raise click.ClickException(
            f"{error}\nFix the input document (see spec/rewards.md, 'Exchange format')."
        ) from None
    if output is None:
        sys.stdout.write(document)
        sys.stdout.flush()
    else:
        output.write_text(document, encoding="ascii")
