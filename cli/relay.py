"""`dolphin relay`: a circuit relay v2 server that is also a bootstrap and DHT server."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from cli.options import daemon_logging, run_trio
from p2p.config import DhtMode, HostConfig, Reachability
from p2p.daemon import serve_peer
from p2p.errors import P2PError
from p2p.ports import PortInUse
from runtime.ready import READY_FILE, DataDirInUse

DEFAULT_LISTEN = ("/ip4/0.0.0.0/tcp/4001",)


@click.command("relay")
@click.option(
    "--listen",
    "listen",
    multiple=True,
    default=DEFAULT_LISTEN,
    show_default=True,
    envvar="DOLPHIN_RELAY_LISTEN",
    help="Multiaddr to listen on (repeatable). Use tcp/0 for any free port.",
)
@click.option(
    "--bootstrap",
    multiple=True,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Another bootstrap peer, /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    envvar="DOLPHIN_RELAY_DATA_DIR",
    help=f"Holds the relay's identity key and, once it is serving, {READY_FILE} (its own folder: not the "
    "chain's DOLPHIN_DATA_DIR).",
)
def command(listen: tuple[str, ...], bootstrap: tuple[str, ...], data_dir: Path) -> None:
    """Run a relay: peers behind NAT reserve a slot here and are dialled through it; everyone may use it
    to bootstrap into the DHT. Stops cleanly on Ctrl-C or SIGTERM.
    """
    try:
        config = HostConfig(
            data_dir=data_dir,
            listen=listen,
            bootstrap=bootstrap,
            reachability=Reachability.PUBLIC,  # a relay nobody can dial is useless: say so by failing to bind
            dht_mode=DhtMode.SERVER,
            relay_service=True,
        )
    except P2PError as error:
        raise click.BadParameter(str(error)) from None
    daemon_logging("p2p.daemon")  # its start and stop lines

    async def announce(host):
        click.echo(f"relay {host.peer_id} serving on:", err=True)
        for addr in host.listen_addrs():
            click.echo(f"  {addr}", err=True)
        return None

    try:
        run_trio(functools.partial(serve_peer, config, on_ready=announce))
    except (PortInUse, DataDirInUse) as error:
        raise click.ClickException(str(error)) from None
    except P2PError as error:
        raise click.ClickException(f"{error}\nCheck --listen and --bootstrap.") from None
    except OSError as error:
        raise click.ClickException(f"cannot listen: {error}\nIs another process using the port?") from None
