"""Daemon settings: one frozen dataclass per daemon whose fields document themselves, read from TOML.

Shared by `dolphin node` (node.config), `dolphin gateway` (pool.gateway_config) and any daemon after
them. Where a setting comes from, strongest first: a command-line option (`overrides`), its environment
variable (<PREFIX><SETTING>, e.g. DOLPHIN_NODE_MAX_BATCH), the config file (given, else <data dir>/<file
name> when it exists), the dataclass default. `render_settings` writes the file with every setting, its
default and what it does (each field's `doc(...)` metadata), so an operator edits rather than guesses.

Field types understood: str, int, float, bool, Path, tuple[str, ...], dict[str, str], and any of them
optional (`| None`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from runtime.home import DOLPHIN_HOME

__all__ = [
    "DaemonSettings",
    "chain_dir_setting",
    "deployment_setting",
    "doc",
    "env_name",
    "load_settings",
    "normalise_settings",
    "render_settings",
    "rpc_url_setting",
]


class Dataclass(Protocol):
    """Any dataclass (what `dataclasses.fields` takes): every daemon's settings are one."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


S = TypeVar("S", bound=Dataclass)


def doc(text: str) -> dict[str, str]:
    """A field's metadata: what the setting does, as the config file and --help say it."""
    return {"doc": text}


# Where every daemon finds the chain, as the `dolphin chain` commands do (chain.locate): the same three
# settings, documented alike.
def rpc_url_setting() -> Any:
    return field(
        default=None, metadata=doc("Chain JSON-RPC URL; else the chain dir's ready.json; else no chain.")
    )


def deployment_setting() -> Any:
    return field(default=None, metadata=doc("Deployment file; else <chain dir>/deployment-<chain id>.json."))


def chain_dir_setting() -> Any:
    return field(
        default=DOLPHIN_HOME, metadata=doc("Where `dolphin chain` keeps ready.json and deployments.")
    )


def normalise_settings(
    config: Dataclass, *, positive: Iterable[str], error: type[Exception], local_only: Iterable[str] = ()
) -> None:
    """What every daemon's settings do after init (a frozen dataclass's `__post_init__`): expand `~` in
    each Path, refuse a setting of `positive` that is not, and refuse a HOST:PORT of `local_only` that
    listens beyond this machine (those endpoints have no authentication)."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if isinstance(value, Path):
            object.__setattr__(config, item.name, value.expanduser())
    for name in positive:
        if getattr(config, name) <= 0:
            raise error(f"{name} must be positive, not {getattr(config, name)!r}")
    for name in local_only:
        host = getattr(config, name).rpartition(":")[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise error(f"{name} must listen on 127.0.0.1 (it has no authentication), not {host!r}")


def env_name(prefix: str, setting: str) -> str:
    """The environment variable of a setting: <prefix><SETTING>."""
    return f"{prefix}{setting.upper()}"


def _coerce(cls: type, name: str, value: Any, error: type[Exception]) -> Any:
    """A TOML or option value as the field's type; `error` naming the setting when it cannot be."""
    hint = typing.get_type_hints(cls)[name]
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    origin = typing.get_origin(base)
    try:
        if value is None and optional:
            return None
        if origin is tuple:
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise TypeError("expected a list")
            return tuple(str(item) for item in value)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise TypeError("expected a table")
            return {str(key): str(item) for key, item in value.items()}
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if base is Path:
            return Path(str(value))
        if base is float:
            return float(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("expected an integer")
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise error(f"setting {name!r}: {exc} (got {value!r})") from None


def _from_environment(cls: type, name: str, text: str) -> Any:
    """An environment variable's text as a TOML value when it reads as one (true, 8, [..], {..}); lists
    may also be written comma-separated; anything else is the text itself."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    if typing.get_origin(typing.get_type_hints(cls)[name]) is tuple and isinstance(value, str):
        value = [item for item in value.replace(",", " ").split() if item]
    return value


def load_settings(
    cls: type[S],
    *,
    prefix: str,
    file_name: str,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    error: type[Exception] = ValueError,
) -> S:
    """Defaults, then `config_file` (TOML), then <prefix><SETTING> variables of `environ` (the process
    environment by default), then `overrides` (command-line options).

    Without `config_file`, <data dir>/`file_name` is read when it exists (the data dir from `overrides`,
    the environment or the default; `cls` must have a `data_dir` field). Raises `error` for unknown
    settings or bad values; a file's settings named in `cls.RETIRED_SETTINGS` (name: why) are dropped with a
    warning.
    """
    overrides = dict(overrides or {})
    environ = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise error(f"unknown setting(s) {unknown}")
    from_environment = {
        name: _coerce(cls, name, _from_environment(cls, name, environ[env_name(prefix, name)]), error)
        for name in names
        if environ.get(env_name(prefix, name))
    }
    if config_file is None:
        default_dir = cls.__dataclass_fields__["data_dir"].default
        data_dir = Path(overrides.get("data_dir") or from_environment.get("data_dir") or default_dir)
        candidate = data_dir.expanduser() / file_name
        config_file = candidate if candidate.is_file() else None
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise error(f"cannot read the config file {config_file}: {exc}") from exc
        retired: Mapping[str, str] = getattr(cls, "RETIRED_SETTINGS", {})
        for name in sorted(set(document) & set(retired) - names):
            # A setting a release took away: the file of an upgraded daemon still runs, and says so.
            logging.getLogger(__name__).warning(
                "%s: setting %s is no longer used (%s): delete its line", config_file, name, retired[name]
            )
            del document[name]
        unknown = sorted(set(document) - names)
        if unknown:
            raise error(f"{config_file}: unknown setting(s) {unknown}")
        values.update({name: _coerce(cls, name, value, error) for name, value in document.items()})
    values.update(from_environment)
    values.update({name: _coerce(cls, name, value, error) for name, value in overrides.items()})
    return cls(**values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render_settings(config: Dataclass, header: str) -> str:
    """The config file for `config`: `header` (comment lines), then every setting with what it does;
    unset optional ones commented out."""
    lines = [*(f"# {line}" if line else "" for line in header.splitlines()), ""]
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        lines.append(f"# {item.metadata['doc']}")
        if value is None:
            lines.append(f"# {item.name} = ")
        else:
            lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class DaemonSettings(Generic[S]):
    """One daemon's settings: its dataclass `cls` (with a `data_dir` field), environment variable
    `prefix`, config file name, error type and program name; `env_name`, `load` and `render` are what its
    config module exports as env_name, load_config and render_config."""

    cls: type[S]
    prefix: str
    file_name: str
    error: type[Exception]
    program: str

    def env_name(self, setting: str) -> str:
        """The environment variable of a setting: <prefix><SETTING>."""
        return env_name(self.prefix, setting)

    def load(
        self,
        config_file: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> S:
        """Defaults, then the config file, then <prefix><SETTING> variables, then `overrides` (see
        `load_settings`)."""
        return load_settings(
            self.cls,
            prefix=self.prefix,
            file_name=self.file_name,
            config_file=config_file,
            overrides=overrides,
            environ=environ,
            error=self.error,
        )

    def render(self, config: S | None = None) -> str:
        """The config file: every setting with what it does; unset optional ones commented out."""
        header = (
            f"{self.program} configuration. Command-line options and {self.prefix}<SETTING> environment\n"
            "variables override what is written here; deleting a line restores its default."
        )
        return render_settings(config if config is not None else self.cls(), header)
