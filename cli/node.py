"""`dolphin node`: run the node daemon, write its config, register it on chain, list its receipts.

    dolphin node --model DIR --listen MULTIADDR --bootstrap MULTIADDR --data-dir DIR
    dolphin node init [--data-dir DIR]
    dolphin node register --key-file OPERATOR_KEY [--data-dir DIR] [--rpc-url URL]
    dolphin node receipts --data-dir DIR [--epoch N] [--json] [--totals]

Settings: an option beats its environment variable (DOLPHIN_NODE_<SETTING>), which beats the config file
(--config, else <data dir>/node.toml), which beats the defaults `dolphin node init` writes out.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chain.errors import ChainError
from cli.chain import Connection
from cli.options import (
    announce_option,
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
from node.config import PROFILES, SETTINGS, NodeConfig, env_name, load_config
from node.daemon import serve_node
from node.errors import NodeError
from node.ledger import LEDGER_FILE, read_ledger
from node.registration import register_node
from p2p import P2PError
from p2p.ports import PortInUse
from runtime.ready import DataDirInUse

_err = Console(stderr=True)

# Options of the daemon that map one to one onto NodeConfig settings.
_OPTION_SETTINGS = (
    "data_dir",
    "model",
    "extra_models",
    "listen",
    "announce",
    "bootstrap",
    "engine",
    "engine_url",
    "max_batch",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "threads",
    "device",
    "local_api",
    "heartbeat_interval",
    "drain_timeout",
    "serve_unpaid",
    "yield_when_busy",
    "epoch_seconds",
    "receipt_submit_seconds",
    "rpc_url",
    "deployment",
    "chain_dir",
)


def _explicit(ctx: click.Context) -> dict[str, Any]:
    """The settings given on the command line or in the environment (they override the config file)."""
    values = explicit_settings(ctx, _OPTION_SETTINGS)
    if ctx.params.get("no_listen"):
        values["listen"] = ()
    return values


class _StartProgress:
    """Start-up steps as a rich progress bar on a terminal, as plain lines otherwise (no carriage
    returns in a log file)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None
        self._step = ""

    def __enter__(self) -> _StartProgress:
        if _err.is_terminal:
            columns = (TextColumn("{task.description:<32}"), BarColumn(), TimeElapsedColumn())
            self._progress = Progress(*columns, console=_err, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=step, completed=done, total=total or None)
        elif step != self._step:
            click.echo(f"{step}...", err=True)
        self._step = step


class _Started:
    """serve_node's task status: when it is serving, end the progress display and say where it is."""

    def __init__(self, progress: _StartProgress) -> None:
        self._progress = progress

    def started(self, document: dict | None = None) -> None:
        self._progress.__exit__(None, None, None)
        assert document is not None
        click.echo(f"node {document['peer_id']} serving {document['model_name']}", err=True)
        for addr in document["advertised_addrs"]:
            click.echo(f"  {addr}", err=True)
        click.echo(f"  local API {document['local_api']}  metrics {document['metrics']}", err=True)
        if not document["registered"]:
            click.echo("  unregistered (earns nothing): see `dolphin node register`", err=True)


def _run(config: NodeConfig) -> None:
    with _StartProgress() as progress:
        serve = functools.partial(serve_node, config, progress=progress, task_status=_Started(progress))
        run_trio(serve)


_setting = setting_option(NodeConfig, env_name)
_chain_options = chain_options(_setting)
_PATH = click.Path(file_okay=False, path_type=Path)


@click.group("node", invoke_without_command=True)
@config_file_option(SETTINGS)
@_setting("--data-dir", setting="data_dir", type=_PATH, help="Keys, ledger, benchmark cache and ready.json.")
@_setting(
    "--model",
    setting="model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model folder to serve (made by `dolphin model`).",
)
@_setting(
    "--extra-model",
    setting="extra_models",
    multiple=True,
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Another model folder to serve, with its own engine (repeatable).",
)
@_setting(
    "--listen", setting="listen", multiple=True, default=None, help="libp2p listen multiaddr (repeatable)."
)
@click.option("--no-listen", is_flag=True, help="No direct address: reachable through relays only.")
@announce_option(_setting)
@_setting(
    "--bootstrap",
    setting="bootstrap",
    multiple=True,
    default=None,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Bootstrap/relay peer /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@_setting(
    "--engine",
    setting="engine",
    type=click.Choice(["transformers", "vllm"]),
    help="Inference engine: in-process transformers, or a vLLM server the node starts and supervises.",
)
@_setting(
    "--engine-url",
    setting="engine_url",
    help="With --engine vllm: attach to the vLLM server already running at this URL.",
)
@_setting("--max-batch", setting="max_batch", type=click.IntRange(1, 1024), help="Answers generated at once.")
@_setting(
    "--tensor-parallel-size",
    setting="tensor_parallel_size",
    type=click.IntRange(1),
    help="vLLM: GPUs each layer is split across.",
)
@_setting(
    "--pipeline-parallel-size",
    setting="pipeline_parallel_size",
    type=click.IntRange(1),
    help="vLLM: GPUs the layers are spread over in stages.",
)
@_setting(
    "--gpu-memory-utilization",
    setting="gpu_memory_utilization",
    type=click.FloatRange(0, 1),
    help="vLLM: share of each GPU's memory it may take (0: vLLM's default).",
)
@_setting(
    "--max-model-len",
    setting="max_model_len",
    type=click.IntRange(0),
    help="vLLM: longest prompt + answer in tokens (0: the manifest's).",
)
@_setting(
    "--threads",
    setting="threads",
    type=click.IntRange(0, 1024),
    help="CPU threads of the engine; 0: torch's.",
)
@_setting("--device", setting="device", help="auto, cpu, cuda, cuda:N.")
@_setting("--local-api", setting="local_api", help="127.0.0.1:PORT of the local OpenAI API and /metrics.")
@_setting(
    "--heartbeat-interval", setting="heartbeat_interval", type=float, help="Seconds between heartbeats."
)
@_setting(
    "--drain-timeout",
    setting="drain_timeout",
    type=float,
    help="Seconds answers in flight may take to finish on SIGTERM.",
)
@_setting(
    "--serve-unpaid/--paid-only",
    setting="serve_unpaid",
    default=None,
    help="Whether requests nobody pays for are served.",
)
@_setting(
    "--yield-when-busy/--no-yield-when-busy",
    setting="yield_when_busy",
    default=None,
    help="Pause network requests while other processes keep the GPU/CPU busy.",
)
@_setting(
    "--epoch-seconds",
    setting="epoch_seconds",
    type=click.IntRange(1),
    help="The network's settlement epoch in seconds (86400; seconds on a local dev network).",
)
@_setting(
    "--receipt-submit-seconds",
    setting="receipt_submit_seconds",
    type=click.FloatRange(0.1),
    help="Seconds between rounds that hand paid receipts to the validators.",
)
@_chain_options
@click.pass_context
@profile_option(PROFILES)
def group(
    ctx: click.Context, config_file: Path | None, no_listen: bool, profile: str | None, **_: Any
) -> None:
    """Run a node: serve a model to the network until Ctrl-C or SIGTERM (which drain first).

    Example: dolphin node --model models/smollm2 --bootstrap /ip4/…/tcp/4001/p2p/… --data-dir ~/node
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = load_config(config_file, with_profile(PROFILES, profile, _explicit(ctx)))
        daemon_logging("node")
        _run(config)
    except (NodeError, PortInUse, DataDirInUse) as exc:
        raise click.ClickException(str(exc)) from None
    except P2PError as exc:
        raise click.ClickException(f"{exc}\nCheck --listen and --bootstrap.") from None
    except OSError as exc:
        raise click.ClickException(f"{exc}\nIs another process using the port?") from None


@group.command("init")
@_setting("--data-dir", setting="data_dir", type=_PATH, help="Write <data dir>/node.toml.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the config file here instead.",
)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
def init_command(data_dir: Path | None, config_file: Path | None, force: bool) -> None:
    """Write a config file with every setting, its default and what it does."""
    write_config_file(SETTINGS, data_dir, config_file, force)


@group.command("register")
@_setting(
    "--data-dir", setting="data_dir", type=_PATH, default=NodeConfig.data_dir, help="The node's data dir."
)
@_chain_options
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DOLPHIN_KEY_FILE",
    help="The operator's hex private key file (or set DOLPHIN_PRIVATE_KEY).",
)
def register_command(
    data_dir: Path,
    rpc_url: str | None,
    deployment: Path | None,
    chain_dir: Path | None,
    key_file: Path | None,
) -> None:
    """Bind this node's peer id to the operator's wallet on chain (Bonding.registerNode), and keep the
    signed binding in the data dir for the node's heartbeats."""
    connection = Connection(rpc_url, (chain_dir or NodeConfig.chain_dir).expanduser(), deployment, key_file)
    try:
        client = connection.client()
        binding = register_node(data_dir.expanduser(), client)
    except (ChainError, NodeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"registered the node in {data_dir} to operator 0x{binding.operator.hex()}")


@group.command("receipts")
@_setting(
    "--data-dir", setting="data_dir", type=_PATH, default=NodeConfig.data_dir, help="The node's data dir."
)
@click.option("--epoch", type=click.IntRange(0), help="Only this epoch (the node's clock / epoch_seconds).")
@click.option("--totals", is_flag=True, help="Per-epoch totals instead of single receipts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
def receipts_command(data_dir: Path, epoch: int | None, totals: bool, as_json: bool) -> None:
    """List the countersigned receipts this node stored (or their per-epoch totals)."""
    data_dir = data_dir.expanduser()
    if not (data_dir / LEDGER_FILE).is_file():
        raise click.ClickException(f"no ledger in {data_dir}: has a node run there?")
    try:
        read = (lambda ledger: ledger.epoch_totals()) if totals else (lambda ledger: ledger.receipts(epoch))
        rows = [row.to_json() for row in trio.run(read_ledger, data_dir, read)]
    except NodeError as exc:
        raise click.ClickException(str(exc)) from None
    if totals and epoch is not None:
        rows = [row for row in rows if row["epoch"] == epoch]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not rows:
        console.print("no receipts")
        return
    table = Table(title="epoch totals" if totals else "receipts")
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row.values()))
    console.print(table)
