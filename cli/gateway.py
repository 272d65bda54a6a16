"""`dolphin gateway`: an OpenAI-compatible HTTP API over the network, and its config file.

    dolphin gateway --bootstrap MULTIADDR --http HOST:PORT --data-dir DIR [--api-key KEY] [--model M]...
    dolphin gateway init [--data-dir DIR]

Settings: an option beats its environment variable (DOLPHIN_GATEWAY_<SETTING>), which beats the config
file (--config, else <data dir>/gateway.toml), which beats the defaults `dolphin gateway init` writes.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import click

from chain.errors import ChainError
from cli.model import load_counter, network_model
from cli.options import (
    announce_option,
    chain_options,
    config_file_option,
    daemon_logging,
    explicit_settings,
    run_trio,
    setting_option,
    write_config_file,
)
from p2p import P2PError
from p2p.ports import PortInUse
from pool.errors import PoolError
from pool.gateway import serve_gateway
from pool.gateway_config import SETTINGS, GatewayConfig, env_name, load_config
from runtime.ready import DataDirInUse

_OPTION_SETTINGS = (
    "data_dir",
    "http",
    "bootstrap",
    "listen",
    "announce",
    "api_key",
    "allowed_origins",
    "models",
    "nodes",
    "min_verification",
    "drain_timeout",
    "rpc_url",
    "deployment",
    "chain_dir",
    "key_file",
)
_setting = setting_option(GatewayConfig, env_name)
_chain_options = chain_options(_setting)
_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)


def _token_counters(model_dirs: tuple[Path, ...]) -> dict[bytes, Any]:
    """By model id, the tokenizer counters of the configured model folders (exact bills)."""
    from node.errors import ModelError
    from node.models import load_manifest
    from node.models.tokens import TokenizerCounter

    counters = {}
    for name in model_dirs:
        folder = Path(name).expanduser()
        try:
            counters[load_manifest(folder).model_id()] = TokenizerCounter.from_model_dir(folder)
        except ModelError as exc:
            raise click.BadParameter(f"{folder}: {exc}", param_hint="model_dirs") from None
    return counters


class _Started:
    """serve_gateway's task status: say where it serves."""

    def started(self, document: dict | None = None) -> None:
        assert document is not None
        click.echo(
            f"gateway serving the OpenAI API at {document['http']}/v1 (peer {document['peer_id']})", err=True
        )
        if document["api_key_required"]:
            click.echo("  clients must send `Authorization: Bearer <key>`", err=True)
        click.echo(
            f"  answered by {document['nodes']} nodes; metrics at {document['http']}/metrics", err=True
        )


@click.group("gateway", invoke_without_command=True)
@config_file_option(SETTINGS)
@_setting(
    "--data-dir", setting="data_dir", type=_DIR, help="Receipts of served answers, reports, ready.json."
)
@_setting("--http", setting="http", help="HOST:PORT the OpenAI-compatible API listens on.")
@_setting(
    "--bootstrap",
    setting="bootstrap",
    multiple=True,
    default=None,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Bootstrap/relay peer /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@_setting(
    "--listen",
    setting="listen",
    multiple=True,
    default=None,
    help="libp2p listen multiaddr of the gateway's peer (repeatable); a public one lets nodes behind NAT "
    "dial back, off their relay.",
)
@announce_option(_setting)
@_setting("--api-key", setting="api_key", help="Require `Authorization: Bearer KEY` from clients.")
@_setting(
    "--allowed-origin",
    setting="allowed_origins",
    multiple=True,
    default=None,
    help="A web origin whose pages may call the API from a browser (CORS; repeatable) [default: none].",
)
@_setting(
    "--model",
    "-m",
    setting="models",
    multiple=True,
    default=None,
    help="Model to list from the start, by id, name or model folder (repeatable); others are found on "
    "request.",
)
@_setting(
    "--nodes",
    setting="nodes",
    type=click.Choice(["auto", "any", "registered", "bonded"]),
    help="Which nodes answer by default (auto: any without a chain, registered with one).",
)
@_setting(
    "--min-verification",
    setting="min_verification",
    type=click.Choice(["good", "suspect"]),
    help="Default minimum validator standing of the nodes that answer.",
)
@_setting("--drain-timeout", setting="drain_timeout", type=float, help="Seconds answers may take on SIGTERM.")
@_chain_options
@_setting(
    "--key-file",
    setting="key_file",
    type=_FILE,
    envvar="DOLPHIN_KEY_FILE",
    help="Hex private key of the wallet whose credit pays (needs a chain).",
)
@click.pass_context
def group(ctx: click.Context, config_file: Path | None, **_: Any) -> None:
    """Serve an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions, /v1/reports)
    answered by the network's nodes, until Ctrl-C or SIGTERM (which drain first).

    Example: dolphin gateway --bootstrap /ip4/…/tcp/4001/p2p/… --http 127.0.0.1:8080 --data-dir ~/gateway
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        config = load_config(config_file, explicit_settings(ctx, _OPTION_SETTINGS))
        config = dataclasses.replace(config, models=tuple(network_model(model)[0] for model in config.models))
        daemon_logging("pool")
        counters = _token_counters(config.model_dirs)
        run_trio(
            functools.partial(
                serve_gateway, config, counters=counters, load_counter=load_counter, task_status=_Started()
            )
        )
    except (PoolError, PortInUse, DataDirInUse) as exc:
        raise click.ClickException(str(exc)) from None
    except ChainError as exc:
        raise click.ClickException(f"{exc}\nCheck --rpc-url and --deployment, or leave them out.") from None
    except P2PError as exc:
        raise click.ClickException(f"{exc}\nCheck --bootstrap.") from None
    except OSError as exc:
        raise click.ClickException(f"{exc}\nIs another process using the --http port?") from None


@group.command("init")
@_setting("--data-dir", setting="data_dir", type=_DIR, help="Write <data dir>/gateway.toml.")
@click.option("--config", "config_file", type=_FILE, help="Write the config file here instead.")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
def init_command(data_dir: Path | None, config_file: Path | None, force: bool) -> None:
    """Write a config file with every setting, its default and what it does."""
    write_config_file(SETTINGS, data_dir, config_file, force)
