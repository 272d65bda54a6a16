"""The node's configuration: one dataclass whose fields document themselves, read from a TOML file.

Where a setting comes from, strongest first: a command-line option, its environment variable
(DOLPHIN_NODE_<FIELD>, e.g. DOLPHIN_NODE_MAX_BATCH), the config file (`--config`, else
<data dir>/node.toml when it exists), the default here. `dolphin node init` writes the file with every
setting, its default and what it does, so an operator edits rather than guesses.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.errors import NodeError

__all__ = ["CONFIG_FILE", "ConfigError", "NodeConfig", "env_name", "load_config", "render_config"]

CONFIG_FILE = "node.toml"


class ConfigError(NodeError):
    """A setting is unknown, of the wrong type, or out of range."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class NodeConfig:
    """Every setting of `dolphin node`; see `render_config` for the file form."""

    data_dir: Path = field(
        default=Path("~/.dolphin/node"),
        metadata=_doc("Keys, ledger, benchmark cache and ready.json live here."),
    )
    model: Path | None = field(
        default=None, metadata=_doc("The model folder to serve (with its dolphin-manifest.json).")
    )
    listen: tuple[str, ...] = field(
        default=("/ip4/0.0.0.0/tcp/4002",),
        metadata=_doc("libp2p listen multiaddrs; [] for none (reachable through relays only)."),
    )
    bootstrap: tuple[str, ...] = field(
        default=(), metadata=_doc("Bootstrap/relay peers, /ip4/…/tcp/…/p2p/<peer-id>.")
    )
    engine: str = field(
        default="transformers",
        metadata=_doc(
            "Inference engine: transformers (in-process) or vllm (a vLLM server the node starts and "
            "supervises from vllm_venv, or the one at engine_url)."
        ),
    )
    engine_url: str | None = field(
        default=None,
        metadata=_doc("With engine vllm: attach to the vLLM server at this URL instead of starting one."),
    )
    vllm_venv: Path | None = field(
        default=None,
        metadata=_doc("With engine vllm: the virtualenv holding vLLM (default: the checkout's .venv-vllm)."),
    )
    max_batch: int = field(
        default=16, metadata=_doc("Answers the engine generates at once (vLLM: its --max-num-seqs).")
    )
    threads: int = field(
        default=1,
        metadata=_doc(
            "CPU threads of the transformers engine; 0 lets torch choose. More help a big model on an idle "
            "CPU; 1 keeps logprobs reproducible bit for bit and avoids contention on a busy machine."
        ),
    )
    device: str = field(
        default="auto", metadata=_doc("Where the transformers engine runs: auto, cpu, cuda, cuda:N.")
    )
    local_api: str = field(
        default="127.0.0.1:8477",
        metadata=_doc("host:port of the local OpenAI-compatible API and /metrics (127.0.0.1 only)."),
    )
    heartbeat_interval: float = field(default=5.0, metadata=_doc("Seconds between pool heartbeats."))
    max_new_tokens: int = field(default=1024, metadata=_doc("Most tokens one network request may ask for."))
    max_waiting: int = field(
        default=64, metadata=_doc("Refuse network requests while this many wait for an engine slot.")
    )
    flush_interval_ms: int = field(
        default=25, metadata=_doc("Milliseconds between answer frames after the first token.")
    )
    serve_unpaid: bool = field(
        default=True, metadata=_doc("Serve requests no covered credit authorisation pays for.")
    )
    drain_timeout: float = field(
        default=30.0, metadata=_doc("On SIGTERM/SIGINT, seconds in-flight answers may take to finish.")
    )
    yield_when_busy: bool = field(
        default=False, metadata=_doc("Stop taking network requests while the owner uses the machine.")
    )
    busy_above: float = field(
        default=0.5, metadata=_doc("Busy when other processes use more than this share of GPU or CPU.")
    )
    idle_below: float = field(
        default=0.25, metadata=_doc("Idle again when other processes use less than this share.")
    )
    busy_check_interval: float = field(
        default=2.0, metadata=_doc("Seconds between checks of the owner's activity.")
    )
    key_rotation_hours: float = field(
        default=24.0, metadata=_doc("Hours between rotations of the node's X25519 key.")
    )
    epoch_seconds: int = field(
        default=86400,
        metadata=_doc(
            "Length of the receipt epochs (Unix time slices): the network's settlement epoch, which the "
            "validators close; a local dev network may use seconds."
        ),
    )
    benchmark_prompt_tokens: int = field(
        default=128, metadata=_doc("Prompt length of the start-up self-benchmark.")
    )
    benchmark_output_tokens: int = field(
        default=32, metadata=_doc("Tokens each self-benchmark answer generates.")
    )
    benchmark_streams: int = field(
        default=8, metadata=_doc("Concurrent streams of the self-benchmark's N-stream run.")
    )
    attestation_interval: float = field(
        default=3600.0, metadata=_doc("Seconds between republications of the benchmark.")
    )
    rpc_url: str | None = field(
        default=None, metadata=_doc("Chain JSON-RPC URL; else the chain dir's ready.json; else no chain.")
    )
    deployment: Path | None = field(
        default=None, metadata=_doc("Deployment file; else <chain dir>/deployment-<chain id>.json.")
    )
    chain_dir: Path = field(
        default=Path("~/.dolphin"), metadata=_doc("Where `dolphin chain` keeps ready.json and deployments.")
    )
    credit_refresh_seconds: float = field(
        default=30.0, metadata=_doc("Seconds between re-reads of known clients' credit.")
    )
    receipt_submit_seconds: float = field(
        default=300.0,
        metadata=_doc(
            "Seconds between rounds that hand paid receipts to the validators (there is also one right "
            "after each epoch ends, and one on shutdown)."
        ),
    )

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Path):
                object.__setattr__(self, item.name, value.expanduser())
        positive = (
            "max_batch",
            "heartbeat_interval",
            "max_new_tokens",
            "max_waiting",
            "drain_timeout",
            "receipt_submit_seconds",
        )
        for name in (*positive, "busy_check_interval", "key_rotation_hours", "epoch_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.threads < 0 or self.flush_interval_ms < 0:
            raise ConfigError("threads and flush_interval_ms must not be negative")
        if not 0 <= self.idle_below <= self.busy_above <= 1:
            raise ConfigError("need 0 <= idle_below <= busy_above <= 1")
        host = self.local_api.rpartition(":")[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ConfigError(f"local_api must listen on 127.0.0.1 (it has no authentication), not {host!r}")
        if self.engine not in ("transformers", "vllm"):
            raise ConfigError(f"unknown engine {self.engine!r}; choose transformers or vllm")
        if self.engine_url is not None and self.engine != "vllm":
            raise ConfigError("engine_url attaches to a vLLM server: set engine to vllm too")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(NodeConfig)


def _coerce(name: str, value: Any) -> Any:
    """A TOML or option value as the field's type; ConfigError naming the setting when it cannot be."""
    hint = _field_types()[name]
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
        raise ConfigError(f"setting {name!r}: {exc} (got {value!r})") from None


def env_name(setting: str) -> str:
    """The environment variable of a setting: DOLPHIN_NODE_<SETTING>."""
    return f"DOLPHIN_NODE_{setting.upper()}"


def _from_environment(name: str, text: str) -> Any:
    """An environment variable's text as a TOML value when it reads as one (true, 8, [..]); lists may
    also be written comma-separated; anything else is the text itself."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    if typing.get_origin(_field_types()[name]) is tuple and isinstance(value, str):
        value = [item for item in value.replace(",", " ").split() if item]
    return value


def load_config(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Defaults, then `config_file` (TOML), then DOLPHIN_NODE_<SETTING> variables of `environ` (the
    process environment by default), then `overrides` (command-line options).

    Without `config_file`, <data dir>/node.toml is read when it exists (the data dir from `overrides`,
    the environment or the default). Raises ConfigError for unknown settings or bad values.
    """
    overrides = dict(overrides or {})
    environ = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(NodeConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}")
    from_environment = {
        name: _coerce(name, _from_environment(name, environ[env_name(name)]))
        for name in names
        if environ.get(env_name(name))
    }
    if config_file is None:
        data_dir = Path(overrides.get("data_dir") or from_environment.get("data_dir") or NodeConfig.data_dir)
        data_dir = data_dir.expanduser()
        candidate = data_dir / CONFIG_FILE
        config_file = candidate if candidate.is_file() else None
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the config file {config_file}: {exc}") from exc
        unknown = sorted(set(document) - names)
        if unknown:
            raise ConfigError(f"{config_file}: unknown setting(s) {unknown}")
        values.update({name: _coerce(name, value) for name, value in document.items()})
    values.update(from_environment)
    values.update({name: _coerce(name, value) for name, value in overrides.items()})
    return NodeConfig(**values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render_config(config: NodeConfig | None = None) -> str:
    """The config file: every setting with what it does; unset optional ones commented out."""
    config = config or NodeConfig()
    lines = [
        "# dolphin node configuration. Command-line options and DOLPHIN_NODE_<SETTING> environment",
        "# variables override what is written here; deleting a line restores its default.",
        "",
    ]
    for item in dataclasses.fields(NodeConfig):
        value = getattr(config, item.name)
        lines.append(f"# {item.metadata['doc']}")
        if value is None:
            lines.append(f"# {item.name} = ")
        else:
            lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
