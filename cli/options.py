"""Options shared by the daemon commands: one click option per config setting, with its environment
variable and its default in --help, and the settings a user gave explicitly (which beat the file)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import trio
from click.core import ParameterSource

from runtime.settings import DaemonSettings, Dataclass
from runtime.stacks import run_with_stack_dumps

__all__ = [
    "INTERRUPTED",
    "announce_option",
    "chain_options",
    "config_file_option",
    "daemon_logging",
    "expected_error",
    "explicit_settings",
    "profile_option",
    "run_trio",
    "setting_option",
    "with_profile",
    "write_config_file",
]


def setting_option(config_cls: type[Dataclass], env_name: Callable[[str], str]):
    """A factory of options for `config_cls` settings: `option(*declarations, setting=NAME, help=...)`."""

    def option(*declarations: str, setting: str, help: str, **kwargs: Any):
        default = config_cls.__dataclass_fields__[setting].default
        shown = ", ".join(default) if isinstance(default, tuple) else default
        suffix = f" [default: {shown}]" if shown not in (None, "", ()) and not callable(shown) else ""
        kwargs.setdefault("envvar", env_name(setting))
        return click.option(*declarations, setting, help=help + suffix, **kwargs)

    return option


def explicit_settings(ctx: click.Context, names: Iterable[str]) -> dict[str, Any]:
    """The settings given on the command line or in the environment (they override the config file)."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        name: ctx.params[name]
        for name in names
        if ctx.get_parameter_source(name) in sources and ctx.params[name] not in (None, ())
    }


def profile_option(profiles: dict[str, dict[str, Any]]):
    """--profile NAME: a named set of settings (e.g. dev: a local network's short epochs)."""
    names = ", ".join(
        f"{name}: {', '.join(f'{k}={v}' for k, v in values.items())}" for name, values in profiles.items()
    )
    return click.option(
        "--profile",
        type=click.Choice(sorted(profiles)),
        envvar="DOLPHIN_PROFILE",
        help=f"Settings for a kind of network, beneath options and environment variables ({names}).",
    )


def with_profile(
    profiles: dict[str, dict[str, Any]], profile: str | None, explicit: dict[str, Any]
) -> dict[str, Any]:
    """The settings a command passes on: its profile's, then what was given explicitly over them."""
    return {**profiles.get(profile or "", {}), **explicit}


def chain_options(option: Callable[..., Any]):
    """--rpc-url, --deployment and --chain-dir (where the chain is, as `dolphin chain` finds it), made by
    `option`, a `setting_option` factory of a config with those settings (`runtime.settings`)."""
    options = (
        option("--rpc-url", setting="rpc_url", envvar="DOLPHIN_RPC_URL", help="Chain JSON-RPC URL."),
        option(
            "--deployment",
            setting="deployment",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="DOLPHIN_DEPLOYMENT",
            help="Deployment file [default: <chain dir>/deployment-<chain id>.json].",
        ),
        option(
            "--chain-dir",
            setting="chain_dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="DOLPHIN_DATA_DIR",
            help="Where `dolphin chain` keeps ready.json and deployments.",
        ),
    )

    def decorate(command):
        for each in reversed(options):
            command = each(command)
        return command

    return decorate


def announce_option(option: Callable[..., Any]):
    """--announce, made by `option` (a `setting_option` factory of a config with an `announce` setting)."""
    return option(
        "--announce",
        setting="announce",
        multiple=True,
        default=None,
        help="Multiaddr to advertise instead of the listen ones: a port forward or proxy (repeatable).",
    )


INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C before it was serving (128 + SIGINT, as shells say)."""


def expected_error(error: BaseException) -> BaseException:
    """The error a person should read in what a trio nursery raised: groups (nested, as nurseries nest)
    are opened down to their first leaf that is not a cancellation."""
    while isinstance(error, BaseExceptionGroup):
        leaves = [e for e in error.exceptions if not isinstance(e, trio.Cancelled)]
        error = (leaves or list(error.exceptions))[0]
    return error


def run_trio(async_fn: Callable[[], Any]) -> Any:
    """`trio.run(async_fn)` for a command: an exception group is re-raised as its `expected_error`, so the
    command's `except` clauses see the library's own error type and no traceback reaches the user; Ctrl-C
    (before the daemon handles signals itself, e.g. during a model load) ends it quietly with INTERRUPTED."""
    try:
        return trio.run(run_with_stack_dumps, async_fn)  # `kill -USR1` shows what it is doing
    except BaseExceptionGroup as group:
        error = expected_error(group)
        if isinstance(error, KeyboardInterrupt):
            raise _interrupted() from None
        raise error from None
    except KeyboardInterrupt:
        raise _interrupted() from None


def _interrupted() -> click.exceptions.Exit:
    click.echo("interrupted", err=True)
    return click.exceptions.Exit(INTERRUPTED)


def daemon_logging(package: str) -> None:
    """A daemon's logs: its own package's lines at INFO at least; py-libp2p's only from ERROR up unless
    -vv (it logs every remote misbehaviour as a warning, which the daemon reports in its own words)."""
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("libp2p").setLevel(logging.ERROR)
    logging.getLogger(package).setLevel(min(logging.INFO, logging.getLogger().level))


def config_file_option(daemon: DaemonSettings):
    """A daemon command's --config: the file its settings are read from."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=daemon.env_name("config"),
        help=f"Config file [default: <data dir>/{daemon.file_name} if it exists].",
    )


def write_config_file(
    daemon: DaemonSettings, data_dir: Path | None, config_file: Path | None, force: bool
) -> tuple[Any, Path]:
    """What `dolphin <daemon> init` does: the config file with every setting, its default and what it does,
    at `config_file` or <data dir>/<its file name>; never over an existing one without `force`. Returns the
    config written and where."""
    config = daemon.cls(**({"data_dir": data_dir} if data_dir else {}))
    path = config_file or config.data_dir / daemon.file_name
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(daemon.render(config))
    click.echo(f"wrote {path}")
    return config, path
