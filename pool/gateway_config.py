"""The gateway's configuration: one dataclass whose fields document themselves, read from a TOML file.

Where a setting comes from, strongest first: a command-line option, its environment variable
(DOLPHIN_GATEWAY_<SETTING>, e.g. DOLPHIN_GATEWAY_API_KEY), the config file (`--config`, else
<data dir>/gateway.toml when it exists), the default here. `dolphin gateway init` writes the file with
every setting, its default and what it does (`runtime.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from p2p import LOOPBACK_LISTEN
from pool.errors import PoolError
from pool.http_guard import is_loopback
from runtime import settings
from runtime.home import DOLPHIN_HOME

__all__ = [
    "CONFIG_FILE",
    "ENV_PREFIX",
    "SETTINGS",
    "GatewayConfig",
    "GatewayConfigError",
    "load_config",
    "render_config",
]

CONFIG_FILE = "gateway.toml"
ENV_PREFIX = "DOLPHIN_GATEWAY_"
_doc = settings.doc


class GatewayConfigError(PoolError):
    """A setting is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class GatewayConfig:
    """Every setting of `dolphin gateway`; see `render_config` for the file form."""

    data_dir: Path = field(
        default=DOLPHIN_HOME / "gateway",
        metadata=_doc("The receipts of served answers, users' reports and ready.json live here."),
    )
    http: str = field(
        default="127.0.0.1:8080",
        metadata=_doc("host:port the OpenAI-compatible API listens on (0.0.0.0 to serve other machines)."),
    )
    bootstrap: tuple[str, ...] = field(
        default=(), metadata=_doc("Bootstrap/relay peers, /ip4/…/tcp/…/p2p/<peer-id>.")
    )
    listen: tuple[str, ...] = field(
        default=LOOPBACK_LISTEN,
        metadata=_doc(
            "libp2p listen multiaddrs of the gateway's peer. On a public address (/ip4/0.0.0.0/tcp/4003) "
            "a node behind NAT that answered through a relay dials the gateway back (hole punching, "
            "docs/operator.md) and later requests to it skip the relay."
        ),
    )
    announce: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Multiaddrs to advertise instead of the listen ones (a port forward, a proxy)."),
    )
    api_key: str | None = field(
        default=None,
        metadata=_doc(
            "Clients must send `Authorization: Bearer <key>` when set (better given as "
            "DOLPHIN_GATEWAY_API_KEY than written here)."
        ),
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Web origins (https://app.example) whose pages may call this API from a browser (CORS); "
            "none by default: requests carrying any other Origin header are refused."
        ),
    )
    models: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Models listed by /v1/models from the start, by id (hex) or manifest name; any other is "
            "looked up in the network on its first request."
        ),
    )
    max_models: int = field(
        default=64, metadata=_doc("Most distinct models watched at once (each costs gossip topics).")
    )
    nodes: str = field(
        default="auto",
        metadata=_doc(
            "Which nodes answer by default: any, registered, bonded; auto is any without a chain and "
            "registered with one. A request's `provider` object may ask for stricter."
        ),
    )
    min_verification: str | None = field(
        default=None,
        metadata=_doc("Default minimum validator standing: good, suspect, or none (unset)."),
    )
    prices: dict[str, str] = field(
        default_factory=dict,
        metadata=_doc(
            "Price per 1M tokens by model id or name, in the payment token, that /v1/models lists when "
            "there is no chain (with one it lists the chain's Credits price, which settlement charges)."
        ),
    )
    default_price: str = field(
        default="0", metadata=_doc("Price per 1M tokens of a model missing from prices.")
    )
    max_body_bytes: int = field(default=1 << 20, metadata=_doc("Largest request body accepted (413 above)."))
    max_tokens_limit: int = field(default=4096, metadata=_doc("Most tokens one request may ask for."))
    default_max_tokens: int = field(default=256, metadata=_doc("max_tokens of a request that names none."))
    max_attempts: int = field(default=3, metadata=_doc("Nodes tried per request before giving up (503)."))
    first_token_timeout: float = field(
        default=60.0, metadata=_doc("Seconds a node may take to its first token before another is asked.")
    )
    stall_timeout: float = field(
        default=15.0, metadata=_doc("Seconds a node may go silent mid-answer before another goes on.")
    )
    resolve_timeout: float = field(
        default=15.0, metadata=_doc("Seconds to look a model name up in the network before a 404.")
    )
    drain_timeout: float = field(
        default=30.0, metadata=_doc("On SIGTERM/SIGINT, seconds answers in flight may take to finish.")
    )
    rpc_url: str | None = settings.rpc_url_setting()
    deployment: Path | None = settings.deployment_setting()
    chain_dir: Path = settings.chain_dir_setting()
    chain_refresh_seconds: float = field(
        default=30.0, metadata=_doc("Seconds between re-reads of validators, registrations and bonds.")
    )
    key_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Hex private key of the wallet whose deposited credit pays for answers (needs a chain); "
            "without one, answers are unpaid."
        ),
    )
    share_answers: bool = field(
        default=True,
        metadata=_doc(
            "Hand a random sample of answers (5%, 50% from suspect nodes) to one current validator to "
            "check (organic audits, docs/api.md); false opts out."
        ),
    )
    model_dirs: tuple[Path, ...] = field(
        default=(),
        metadata=_doc(
            "Folders holding the served models' manifests and tokenizer files: receipts for those models "
            "are countersigned only when their token counts equal the gateway's own."
        ),
    )

    def __post_init__(self) -> None:
        positive = (
            "max_models",
            "max_body_bytes",
            "max_tokens_limit",
            "default_max_tokens",
            "max_attempts",
            "first_token_timeout",
            "stall_timeout",
            "resolve_timeout",
            "drain_timeout",
            "chain_refresh_seconds",
        )
        settings.normalise_settings(self, positive=positive, error=GatewayConfigError)
        if self.nodes not in ("auto", "any", "registered", "bonded"):
            raise GatewayConfigError(f"nodes must be auto, any, registered or bonded, not {self.nodes!r}")
        if self.min_verification not in (None, "good", "suspect"):
            raise GatewayConfigError(
                f"min_verification must be good or suspect, not {self.min_verification!r}"
            )
        host, _, port = self.http.rpartition(":")
        if not host or not port.isdigit():
            raise GatewayConfigError(f"http must be HOST:PORT, not {self.http!r}")
        if not is_loopback(host) and self.api_key is None:
            raise GatewayConfigError(
                f"http {self.http} can be reached from other machines, which would spend this gateway's "
                "credit: set api_key (DOLPHIN_GATEWAY_API_KEY) or listen on 127.0.0.1"
            )
        for name, price in {**self.prices, "default_price": self.default_price}.items():
            try:
                if Decimal(price) < 0 or not Decimal(price).is_finite():
                    raise InvalidOperation
            except InvalidOperation:
                raise GatewayConfigError(
                    f"price of {name!r} must be a decimal number >= 0, not {price!r}"
                ) from None

    def price_of(self, model_id: bytes, name: str) -> str:
        """The price per 1M tokens of a model, by its id or its name."""
        return self.prices.get(model_id.hex(), self.prices.get(name, self.default_price))


SETTINGS = settings.DaemonSettings(
    GatewayConfig, ENV_PREFIX, CONFIG_FILE, GatewayConfigError, "dolphin gateway"
)
env_name = SETTINGS.env_name
load_config = SETTINGS.load
render_config = SETTINGS.render
