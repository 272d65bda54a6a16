"""The `dolphin` command line. Each area is a click group in its own module, registered here."""

import os

# Progress is shown by rich alone, which redraws only on a terminal and prints the final state once
# elsewhere. Third-party tqdm bars (transformers' GGUF conversion) would fill a log with carriage-return
# redraws; tqdm reads this when it is first imported, so it is set before anything imports it.
os.environ.setdefault("TQDM_DISABLE", "1")

import click

from cli import ask, chain, demo, gateway, model, node, relay, rewards, validator
from cli.logs import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-v", "--verbose", count=True, envvar="DOLPHIN_VERBOSE", help="More log output (-v info, -vv debug)."
)
@click.version_option(package_name="dolphin-network", prog_name="dolphin")
def main(verbose: int) -> None:
    """Dolphin Network: decentralised, end-to-end encrypted AI inference.

    Node operators run a headless daemon serving a model; validators with bonded stake check the nodes;
    rewards, staking, bonding and credits settle on an EVM chain.
    """
    setup_logging(verbose)


main.add_command(ask.command)
main.add_command(chain.group)
main.add_command(demo.command)
main.add_command(gateway.group)
main.add_command(model.group)
main.add_command(node.group)
main.add_command(rewards.group)
main.add_command(relay.command)
main.add_command(validator.group)

if __name__ == "__main__":
    main()
