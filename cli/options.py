"""Options that map onto a daemon's settings dataclass (`node.settings`), shared by daemon commands.

`setting_option(Config, env_name)` makes a click option for one setting: its environment variable and its
default shown in the help. `explicit_settings(ctx, names)` collects what the command line or the
environment set, to override the config file with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
from click.core import ParameterSource

__all__ = ["explicit_settings", "setting_option"]


def setting_option(config_class: type, env_name: Callable[[str], str]):  # type: ignore[no-untyped-def]
    """A factory of options for `config_class`'s settings (see the module docstring)."""

    def option(*declarations: str, setting: str, help: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        default = config_class.__dataclass_fields__[setting].default
        shown = ", ".join(default) if isinstance(default, tuple) else default
        suffix = f" [default: {shown}]" if shown not in (None, "", ()) else ""
        kwargs.setdefault("envvar", env_name(setting))
        return click.option(*declarations, setting, help=help + suffix, **kwargs)

    return option


def explicit_settings(ctx: click.Context, names: Iterable[str]) -> dict[str, Any]:
    """The settings given on the command line or in the environment (they override the config file)."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        name: ctx.params[name]
        for name in names
        if ctx.get_parameter_source(name) in sources and ctx.params[name] is not None
    }
