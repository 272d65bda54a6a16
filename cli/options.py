"""Options shared by the daemon commands: one click option per config setting, with its environment
variable and its default in --help, and the settings a user gave explicitly (which beat the file)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
from click.core import ParameterSource

__all__ = ["explicit_settings", "setting_option"]


def setting_option(config_cls: type, env_name: Callable[[str], str]):  # type: ignore[no-untyped-def]
    """A factory of options for `config_cls` settings: `option(*declarations, setting=NAME, help=...)`."""

    def option(*declarations: str, setting: str, help: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        default = config_cls.__dataclass_fields__[setting].default  # type: ignore[attr-defined]
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
