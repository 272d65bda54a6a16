"""`dolphin validator`: run the validator daemon, write its config and wallet, audit one node, list rewards.

    dolphin validator --reference DIR --bootstrap MULTIADDR --data-dir DIR
    dolphin validator init [--data-dir DIR]
    dolphin validator audit --bootstrap MULTIADDR --reference MODEL_DIR --peer PEER_ID [--challenges N]
                            [--json]
    dolphin validator rewards [--data-dir DIR] [--epoch N] [--json]

Settings: an option beats its environment variable (DOLPHIN_VALIDATOR_<SETTING>), which beats the config
file (--config, else <data dir>/validator.toml), which beats the defaults `dolphin validator init` writes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chain.errors import ChainError
from cli.options import (
    chain_options,
    config_file_option,
    daemon_logging,
    explicit_settings,
    profile_option,
    run_trio,
    setting_option,
    with_profile,
    write_config_file,
)
from p2p import HostConfig, P2PError
from p2p.ports import PortInUse
from protocols.errors import ProtocolError
from protocols.keys import peer_id_from_text
from runtime.ready import DataDirInUse
from validator.audit import audit_node
from validator.calibration import thresholds_for
from validator.challenge_wallets import challenge_accounts, challenge_seed
from validator.config import (
    CHALLENGE_KEY_FILE,
    KEY_FILE,
    PROFILES,
    SETTINGS,
    ValidatorConfig,
    env_name,
    load_config,
)
from validator.daemon import serve_validator, write_wallet
from validator.errors import ValidatorError
from validator.reference import open_reference
from validator.state import read_state

_err = Console(stderr=True)
_setting = setting_option(ValidatorConfig, env_name)
_chain_options = chain_options(_setting)
_PATH = click.Path(file_okay=False, path_type=Path)
_OPTION_SETTINGS = (
    "data_dir",
    "reference",
    "key_file",
    "listen",
    "bootstrap",
    "metrics",
    "threads",
    "epoch_seconds",
    "concurrency",
    "base_per_hour",
    "max_per_hour",
    "drain_timeout",
    "rpc_url",
    "deployment",
    "chain_dir",
)


class _Started:
    """serve_validator's task status: say where it is once it runs."""

    def started(self, document: dict | None = None) -> None:
        assert document is not None
        what = f"validator {document['validator']} checking {document['model_name']}"
        click.echo(f"{what} as peer {document['peer_id']}", err=True)
        for addr in document["advertised_addrs"]:
            click.echo(f"  {addr}", err=True)
        click.echo(f"  metrics {document['metrics']}", err=True)
        if not document["in_validator_set"]:
            click.echo("  not in the current validator set: it checks nodes but strikes nobody", err=True)


@click.group("validator", invoke_without_command=True)
@config_file_option(SETTINGS)
@_setting("--data-dir", setting="data_dir", type=_PATH, help="State, keys and ready.json.")
@_setting(
    "--reference",
    setting="reference",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The reference model folder: the model whose pool this validates.",
)
@_setting(
    "--key-file",
    setting="key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The validator wallet's hex private key [default: <data dir>/{KEY_FILE}].",
)
@_setting(
    "--listen", setting="listen", multiple=True, default=None, help="libp2p listen multiaddr (repeatable)."
)
@_setting(
    "--bootstrap",
    setting="bootstrap",
    multiple=True,
    default=None,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Bootstrap/relay peer /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@_setting("--metrics", setting="metrics", help="127.0.0.1:PORT of /metrics and /health.")
@_setting(
    "--threads", setting="threads", type=click.IntRange(0, 1024), help="CPU threads of the reference model."
)
@_setting(
    "--epoch-seconds",
    setting="epoch_seconds",
    type=click.IntRange(1),
    help="Epoch length; the nodes' must be the same.",
)
@_setting("--concurrency", setting="concurrency", type=click.IntRange(1, 256), help="Challenges in flight.")
@_setting(
    "--base-per-hour", setting="base_per_hour", type=float, help="Challenges per hour to a trusted node."
)
@_setting("--max-per-hour", setting="max_per_hour", type=float, help="Challenges per hour to a suspect node.")
@_setting(
    "--drain-timeout",
    setting="drain_timeout",
    type=float,
    help="Seconds in-flight challenges may take on SIGTERM.",
)
@_chain_options
@profile_option(PROFILES)
@click.pass_context
def group(ctx: click.Context, config_file: Path | None, profile: str | None, **_: Any) -> None:
    """Run a validator: sample the pool's nodes with ordinary-looking requests, check every answer against
    the reference model, strike, ban and (with a chain) slash cheats, until Ctrl-C or SIGTERM.

    Example: dolphin validator --reference models/smollm2 --bootstrap /ip4/…/tcp/4001/p2p/… --data-dir ~/v
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = load_config(
            config_file, with_profile(PROFILES, profile, explicit_settings(ctx, _OPTION_SETTINGS))
        )
        daemon_logging("validator")
        run_trio(lambda: serve_validator(config, task_status=_Started()))
    except (ValidatorError, PortInUse, DataDirInUse) as exc:
        raise click.ClickException(str(exc)) from None
    except P2PError as exc:
        raise click.ClickException(f"{exc}\nCheck --listen and --bootstrap.") from None
    except OSError as exc:
        raise click.ClickException(f"{exc}\nIs another process using the port?") from None


@group.command("init")
@_setting(
    "--data-dir", setting="data_dir", type=_PATH, help="Write <data dir>/validator.toml and the wallet key."
)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the config here."
)
@click.option("--force", is_flag=True, help="Replace an existing config file (never an existing key).")
def init_command(data_dir: Path | None, config_file: Path | None, force: bool) -> None:
    """Write a config file with every setting, its default and what it does, and a wallet key if there is
    none (bond at least 100,000 POD with it and `dolphin chain validators join` to be elected)."""
    config, _ = write_config_file(SETTINGS, data_dir, config_file, force)
    address = write_wallet(config.wallet_key_file)
    click.echo(f"validator wallet 0x{address} (key in {config.wallet_key_file})")


class _AuditProgress:
    """Challenges done, as a rich bar on a terminal, as plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self._progress: Progress | None = None
        if _err.is_terminal:
            columns = (TextColumn("challenges"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._progress = Progress(*columns, console=_err, transient=True)
            self._task = self._progress.add_task("challenges", total=total)
            self._progress.start()

    def __call__(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done)
        else:
            click.echo(f"challenge {done}/{total} checked", err=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class _CouldNotAudit(click.ClickException):
    """`validator audit` ends without a verdict: scripts tell this from a failed audit by its status."""

    exit_code = 3


@group.command("audit")
@click.option(
    "--bootstrap", required=True, multiple=True, envvar="DOLPHIN_BOOTSTRAP", help="Bootstrap peer multiaddr."
)
@click.option(
    "--reference",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The reference model folder (the model the node says it serves).",
)
@click.option("--peer", "peer_id", required=True, help="The node's peer id.")
@click.option(
    "--challenges", type=click.IntRange(1, 1000), default=8, show_default=True, help="Challenges to send."
)
@click.option(
    "--threads", type=click.IntRange(0, 1024), default=1, show_default=True, help="Reference CPU threads."
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to find the node.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def audit_command(
    bootstrap: tuple[str, ...],
    reference: Path,
    peer_id: str,
    challenges: int,
    threads: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Check one node now, without a chain: send it challenges and check every answer. Exit status 0 when
    it passes, 1 when it fails, 3 when it could not be audited (node not found, network or model error)."""
    try:
        peer_id_from_text(peer_id)
    except ProtocolError:
        raise click.BadParameter(f"{peer_id!r} is not a libp2p peer id", param_hint="--peer") from None
    try:
        HostConfig.light_client(Path("."), bootstrap=bootstrap, listen=())
    except P2PError as exc:
        raise click.BadParameter(str(exc), param_hint="--bootstrap") from None

    async def run() -> dict:
        model = await open_reference(reference, threads=threads or None)
        try:
            with tempfile.TemporaryDirectory(prefix="dolphin-audit-") as scratch:
                progress = _AuditProgress(challenges)
                try:
                    report = await audit_node(
                        model,
                        thresholds_for(model.name),
                        bootstrap=bootstrap,
                        peer_id=peer_id,
                        data_dir=Path(scratch),
                        challenges=challenges,
                        find_timeout=timeout,
                        on_progress=progress,
                    )
                finally:
                    progress.close()
        finally:
            await model.engine.aclose()
        return report.to_json()

    logging.getLogger("libp2p").setLevel(logging.ERROR)
    try:
        result = run_trio(run)
    except (ValidatorError, P2PError) as exc:
        raise _CouldNotAudit(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"node {result['peer']}: {result['verdict']}, {result['failed']} of {result['challenges']} failed"
        )
        for name, counts in result["checks"].items():
            passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
            click.echo(f"  {name:12s} passed {passed}, failed {failed}, skipped {skipped}")
        for failure in result["failures"]:
            click.echo(f"  - {failure}")
    if result["verdict"] != "pass":
        sys.exit(1)


def _existing_data_dir(help: str):
    """The --data-dir of the commands that read a validator's data dir (default: the daemon's)."""
    return _setting("--data-dir", setting="data_dir", type=_PATH, default=ValidatorConfig.data_dir, help=help)


@group.command("challenge-wallets")
@config_file_option(SETTINGS)
@_existing_data_dir(
    "The validator's data dir: its config file, and the seed <data dir>/"
    f"{CHALLENGE_KEY_FILE} (written if missing) unless the config's challenge_key_file names another."
)
@_setting(
    "--count",
    setting="challenge_wallets",
    type=click.IntRange(1, 1024),
    help="How many wallets (the validator's `challenge_wallets` setting).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of addresses on stdout.")
@click.pass_context
def challenge_wallets_command(ctx: click.Context, config_file: Path | None, as_json: bool, **_: Any) -> None:
    """The wallets challenges pay from, one address a line: fund each with credit
    (`dolphin chain credits deposit`) from a wallet that is not the validator's own, in amounts and at
    times like users' (docs/validator.md, "Challenge wallets"); a node that sees the validator's wallet
    pay, or one funder fill them all at once, knows a challenge when it sees one. The seed and the count
    are the daemon's: from its config file, environment and these options, as it reads them."""
    try:
        config = load_config(config_file, explicit_settings(ctx, ("data_dir", "challenge_wallets")))
        accounts = challenge_accounts(challenge_seed(config.challenge_wallet_file), config.challenge_wallets)
    except ValidatorError as exc:
        raise click.ClickException(str(exc)) from None
    addresses = ["0x" + account.address.hex() for account in accounts]
    click.echo(json.dumps(addresses) if as_json else "\n".join(addresses))


@group.command("rewards")
@_existing_data_dir("The validator's data dir.")
@click.option("--epoch", type=click.IntRange(0), help="Only this epoch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
def rewards_command(data_dir: Path, epoch: int | None, as_json: bool) -> None:
    """The rewards the epoch settlement owes for bans (reporting validators, reporting users), from the
    node rewards pool: what slashing did not pay."""
    try:
        rows = trio.run(read_state, data_dir.expanduser(), lambda state: state.rewards(epoch))
    except (ValidatorError, ChainError) as exc:
        raise click.ClickException(str(exc)) from None
    documents = [
        {
            "epoch": row.epoch,
            "account": "0x" + row.account.hex(),
            "role": row.role,
            "amount": str(row.amount),
            "bonded": row.bonded,
            "evidence_hash": "0x" + row.evidence_hash.hex(),
            "node_key": row.node_key.hex(),
        }
        for row in rows
    ]
    if as_json:
        click.echo(json.dumps(documents, indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not documents:
        console.print("no rewards owed")
        return
    table = Table(title="rewards owed by the node rewards pool")
    for column in documents[0]:
        table.add_column(column, overflow="fold")
    for document in documents:
        table.add_row(*(str(value) for value in document.values()))
    console.print(table)
