"""The node's configuration: one dataclass whose fields document themselves, read from a TOML file.

Where a setting comes from, strongest first: a command-line option, its environment variable
(DOLPHIN_NODE_<FIELD>, e.g. DOLPHIN_NODE_MAX_BATCH), the config file (`--config`, else
<data dir>/node.toml when it exists), the default here. `dolphin node init` writes the file with every
setting, its default and what it does, so an operator edits rather than guesses. (The machinery is
`runtime.settings`, shared with the other daemons.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.errors import NodeError
from runtime import settings
from runtime.home import DOLPHIN_HOME
from runtime.settings import doc

__all__ = [
    "CONFIG_FILE",
    "PROFILES",
    "SETTINGS",
    "ConfigError",
    "NodeConfig",
    "env_name",
    "load_config",
    "render_config",
]

CONFIG_FILE = "node.toml"
DEV_EPOCH_SECONDS = 60
PROFILES: dict[str, dict[str, float]] = {
    "dev": {"epoch_seconds": DEV_EPOCH_SECONDS, "receipt_submit_seconds": 5.0, "heartbeat_interval": 2.0},
}
"""Named sets of settings (`--profile`): "dev" is a local dev network's cadence (epochs of a minute, not a
day), matching the validators' "dev" profile and a chain deployed with `--profile dev`."""
ENV_PREFIX = "DOLPHIN_NODE_"


class ConfigError(NodeError):
    """A setting is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class NodeConfig:
    """Every setting of `dolphin node`; see `render_config` for the file form."""

    data_dir: Path = field(
        default=DOLPHIN_HOME / "node",
        metadata=doc("Keys, ledger, benchmark cache and ready.json live here."),
    )
    model: Path | None = field(
        default=None, metadata=doc("The model folder to serve (with its dolphin-manifest.json).")
    )
    extra_models: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "More model folders to serve beside `model`, each with its own engine (and vLLM server), "
            "announced in its own pool."
        ),
    )
    listen: tuple[str, ...] = field(
        default=("/ip4/0.0.0.0/tcp/4002",),
        metadata=doc("libp2p listen multiaddrs; [] for none (reachable through relays only)."),
    )
    announce: tuple[str, ...] = field(
        default=(),
        metadata=doc("Multiaddrs to advertise instead of the listen ones (a port forward, a proxy)."),
    )
    bootstrap: tuple[str, ...] = field(
        default=(), metadata=doc("Bootstrap/relay peers, /ip4/…/tcp/…/p2p/<peer-id>.")
    )
    hole_punch_private_addrs: bool = field(
        default=False,
        metadata=doc(
            "Dial loopback, private and link-local addresses that a client reached through a relay gives "
            "for a direct connection (hole punching); only where node and clients share one LAN."
        ),
    )
    engine: str = field(
        default="transformers",
        metadata=doc(
            "Inference engine: transformers (in-process) or vllm (a vLLM server the node starts and "
            "supervises from vllm_venv, or the one at engine_url)."
        ),
    )
    engine_url: str | None = field(
        default=None,
        metadata=doc("With engine vllm: attach to the vLLM server at this URL instead of starting one."),
    )
    vllm_venv: Path | None = field(
        default=None,
        metadata=doc("With engine vllm: the virtualenv holding vLLM (default: the checkout's .venv-vllm)."),
    )
    max_batch: int = field(
        default=16, metadata=doc("Answers the engine generates at once (vLLM: its --max-num-seqs).")
    )
    tensor_parallel_size: int = field(
        default=1, metadata=doc("With engine vllm on GPUs: GPUs each layer is split across.")
    )
    pipeline_parallel_size: int = field(
        default=1, metadata=doc("With engine vllm on GPUs: GPUs the layers are spread over in stages.")
    )
    gpu_memory_utilization: float = field(
        default=0.0,
        metadata=doc("With engine vllm on GPUs: share of each GPU's memory vLLM may take; 0 for vLLM's 0.9."),
    )
    max_model_len: int = field(
        default=0,
        metadata=doc("With engine vllm: longest prompt + answer in tokens; 0 for the manifest's."),
    )
    threads: int = field(
        default=1,
        metadata=doc(
            "CPU threads of the transformers engine; 0 lets torch choose. More help a big model on an idle "
            "CPU; 1 keeps logprobs reproducible bit for bit and avoids contention on a busy machine."
        ),
    )
    device: str = field(
        default="auto", metadata=doc("Where the transformers engine runs: auto, cpu, cuda, cuda:N.")
    )
    local_api: str = field(
        default="127.0.0.1:8477",
        metadata=doc("host:port of the local OpenAI-compatible API and /metrics (127.0.0.1 only)."),
    )
    heartbeat_interval: float = field(default=5.0, metadata=doc("Seconds between pool heartbeats."))
    max_new_tokens: int = field(default=1024, metadata=doc("Most tokens one network request may ask for."))
    max_waiting: int = field(
        default=64, metadata=doc("Refuse network requests while this many wait for an engine slot.")
    )
    flush_interval_ms: int = field(
        default=25, metadata=doc("Milliseconds between answer frames after the first token.")
    )
    serve_unpaid: bool = field(
        default=True, metadata=doc("Serve requests no covered credit authorisation pays for.")
    )
    drain_timeout: float = field(
        default=30.0, metadata=doc("On SIGTERM/SIGINT, seconds in-flight answers may take to finish.")
    )
    yield_when_busy: bool = field(
        default=False, metadata=doc("Stop taking network requests while the owner uses the machine.")
    )
    busy_above: float = field(
        default=0.5, metadata=doc("Busy when other processes use more than this share of GPU or CPU.")
    )
    idle_below: float = field(
        default=0.25, metadata=doc("Idle again when other processes use less than this share.")
    )
    busy_check_interval: float = field(
        default=2.0, metadata=doc("Seconds between checks of the owner's activity.")
    )
    key_rotation_hours: float = field(
        default=24.0, metadata=doc("Hours between rotations of the node's X25519 key.")
    )
    epoch_seconds: int = field(
        default=86400,
        metadata=doc(
            "Length of the receipt epochs (Unix time slices): the network's settlement epoch, which the "
            "validators close; a local dev network may use seconds."
        ),
    )
    benchmark_prompt_tokens: int = field(
        default=128, metadata=doc("Prompt length of the start-up self-benchmark.")
    )
    benchmark_output_tokens: int = field(
        default=32, metadata=doc("Tokens each self-benchmark answer generates.")
    )
    benchmark_streams: int = field(
        default=8, metadata=doc("Concurrent streams of the self-benchmark's N-stream run.")
    )
    attestation_interval: float = field(
        default=3600.0, metadata=doc("Seconds between republications of the benchmark.")
    )
    rpc_url: str | None = settings.rpc_url_setting()
    deployment: Path | None = settings.deployment_setting()
    chain_dir: Path = settings.chain_dir_setting()
    credit_refresh_seconds: float = field(
        default=30.0, metadata=doc("Seconds between re-reads of known clients' credit.")
    )
    receipt_submit_seconds: float = field(
        default=300.0,
        metadata=doc(
            "Seconds between rounds that hand paid receipts to the validators (there is also one right "
            "after each epoch ends, and one on shutdown)."
        ),
    )

    def __post_init__(self) -> None:
        positive = (
            "max_batch",
            "heartbeat_interval",
            "max_new_tokens",
            "max_waiting",
            "drain_timeout",
            "receipt_submit_seconds",
            "busy_check_interval",
            "key_rotation_hours",
            "epoch_seconds",
        )
        settings.normalise_settings(self, positive=positive, error=ConfigError, local_only=("local_api",))
        if self.threads < 0 or self.flush_interval_ms < 0:
            raise ConfigError("threads and flush_interval_ms must not be negative")
        if self.tensor_parallel_size < 1 or self.pipeline_parallel_size < 1 or self.max_model_len < 0:
            raise ConfigError("tensor/pipeline_parallel_size must be at least 1, max_model_len not negative")
        if not 0 <= self.gpu_memory_utilization <= 1:
            raise ConfigError("gpu_memory_utilization is a share: between 0 and 1")
        if not 0 <= self.idle_below <= self.busy_above <= 1:
            raise ConfigError("need 0 <= idle_below <= busy_above <= 1")
        if self.engine not in ("transformers", "vllm"):
            raise ConfigError(f"unknown engine {self.engine!r}; choose transformers or vllm")
        if self.engine_url is not None and self.engine != "vllm":
            raise ConfigError("engine_url attaches to a vLLM server: set engine to vllm too")


SETTINGS = settings.DaemonSettings(NodeConfig, ENV_PREFIX, CONFIG_FILE, ConfigError, "dolphin node")
env_name = SETTINGS.env_name
load_config = SETTINGS.load
render_config = SETTINGS.render
