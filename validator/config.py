"""The validator's configuration: one dataclass whose fields document themselves (`runtime.settings`).

Where a setting comes from, strongest first: a command-line option, its environment variable
(DOLPHIN_VALIDATOR_<SETTING>), the config file (`--config`, else <data dir>/validator.toml when it exists),
the default here. `dolphin validator init` writes the file with every setting, its default and what it
does. Check thresholds left unset take the reference model's calibration (`calibration`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from runtime import settings
from runtime.home import DOLPHIN_HOME
from runtime.settings import doc
from validator.errors import ValidatorConfigError

__all__ = [
    "CONFIG_FILE",
    "DEV_SETTLEMENT",
    "KEY_FILE",
    "PROFILES",
    "SETTINGS",
    "ValidatorConfig",
    "env_name",
    "load_config",
    "render_config",
]

CONFIG_FILE = "validator.toml"
CHALLENGE_KEY_FILE = "challenge.key"
KEY_FILE = "validator.key"
ENV_PREFIX = "DOLPHIN_VALIDATOR_"
THRESHOLD_SETTINGS = (
    "max_logprob_error",
    "max_choice_gap",
    "token_count_slack",
    "token_count_ratio",
    "nucleus_slack",
    "min_likelihood_z",
    "min_decode_tps",
    "max_decode_tps",
    "max_ttft_ms",
    "attestation_slack",
)


# A local dev network's cadence (the demo, tests): epochs of seconds, not a day. Real networks keep the
# defaults, which leave room for clock skew, slow peers and gas prices.
DEV_SETTLEMENT: dict[str, float] = {
    "submit_grace_seconds": 3.0,
    "sync_delay_seconds": 1.0,
    "sync_timeout_seconds": 10.0,
    "relay_stagger_seconds": 1.0,
    "settlement_poll_seconds": 0.5,
    "announce_seconds": 2.0,
    "keeper_interval_seconds": 1.0,
}


PROFILES: dict[str, dict[str, float]] = {
    "dev": {**DEV_SETTLEMENT, "epoch_seconds": 60, "standing_interval": 10.0, "chain_refresh": 5.0},
}
"""Named sets of settings (`--profile`): "dev" is DEV_SETTLEMENT with epochs of a minute, the nodes' "dev"
profile's (node.config.PROFILES)."""


@dataclass(frozen=True)
class ValidatorConfig:
    """Every setting of `dolphin validator`; see `render_config` for the file form."""

    # Settings earlier releases wrote into validator.toml, and why they are gone (runtime.settings).
    RETIRED_SETTINGS: ClassVar[dict[str, str]] = {
        "slash_bps": "the chain's Slashing.slashBps is the share every validator's decisions slash"
    }

    data_dir: Path = field(
        default=DOLPHIN_HOME / "validator",
        metadata=doc("State (validator.sqlite), the peer key, the wallet key and ready.json live here."),
    )
    reference: Path | None = field(
        default=None,
        metadata=doc("The reference model folder (with its manifest): the model whose pool this validates."),
    )
    key_file: Path | None = field(
        default=None,
        metadata=doc(
            "The validator wallet's private key (hex); default <data dir>/validator.key (init writes one)."
        ),
    )
    listen: tuple[str, ...] = field(
        default=("/ip4/0.0.0.0/tcp/4003",), metadata=doc("libp2p listen multiaddrs; [] for none.")
    )
    bootstrap: tuple[str, ...] = field(
        default=(), metadata=doc("Bootstrap/relay peers, /ip4/…/tcp/…/p2p/<peer-id>.")
    )
    metrics: str = field(
        default="127.0.0.1:8478", metadata=doc("host:port of /metrics and /health (127.0.0.1 only).")
    )
    threads: int = field(default=1, metadata=doc("CPU threads of the reference model; 0 lets torch choose."))
    epoch_seconds: int = field(
        default=86400,
        metadata=doc(
            "Length of an epoch (Unix time slices): strikes, bans, standings and settlement. Nodes' "
            "epoch_seconds must be the same."
        ),
    )
    concurrency: int = field(default=4, metadata=doc("Challenges in flight at once."))
    challenge_max_tokens: int = field(
        default=256, metadata=doc("Longest answer a challenge asks for (its evidence must fit gossip).")
    )
    challenge_timeout: float = field(default=120.0, metadata=doc("Seconds a challenge may take."))
    challenges_per_host: int = field(
        default=16,
        metadata=doc(
            "Challenges sent from one throwaway light-client host before a fresh one (a new peer id)."
        ),
    )
    challenge_prompts: Path | None = field(
        default=None,
        metadata=doc(
            "A private file of challenge prompts, one JSON chat a line ([[role, content], ...]); default "
            "the built-in public mix, which a node can learn to recognise."
        ),
    )
    challenge_key_file: Path | None = field(
        default=None,
        metadata=doc(
            "The seed (hex, 32 bytes) of the wallets that pay for challenges, like clients' wallets; "
            "default <data dir>/challenge.key (written at start; wallet 0 is this key itself). Fund them "
            "from addresses not linked to the validator's: a payer tied to a validator marks its challenges."
        ),
    )
    challenge_wallets: int = field(
        default=16,
        metadata=doc(
            "Challenge wallets derived from the seed; each challenge host pays from one drawn at random "
            "among those with credit, so challenges carry many payers and caps, not one."
        ),
    )
    prior: float = field(default=0.02, metadata=doc("Prior probability that a node cheats."))
    detection: float = field(
        default=0.5,
        metadata=doc("Assumed chance that one check of a cheating node fails (suspicion update)."),
    )
    false_positive: float = field(
        default=0.01,
        metadata=doc("Assumed chance that one check of an honest node fails (suspicion update)."),
    )
    report_factor: float = field(default=3.0, metadata=doc("Odds factor of one user report on suspicion."))
    base_per_hour: float = field(default=6.0, metadata=doc("Challenges per hour to a node believed honest."))
    max_per_hour: float = field(
        default=120.0, metadata=doc("Challenges per hour to a node believed to cheat.")
    )
    max_logprob_error: float | None = field(
        default=None,
        metadata=doc("Largest |logprob - reference logprob| of an honest answer (unset: calibrated)."),
    )
    max_choice_gap: float | None = field(
        default=None,
        metadata=doc("Largest shortfall of a greedy token below the reference's best (calibrated)."),
    )
    token_count_slack: int | None = field(
        default=None,
        metadata=doc("Re-tokenized count may differ by this many tokens plus the ratio (calibrated)."),
    )
    token_count_ratio: float | None = field(
        default=None, metadata=doc("… plus this fraction of the answer's tokens (calibrated).")
    )
    nucleus_slack: float | None = field(
        default=None, metadata=doc("Slack on top_p before a sampled token counts as outside the nucleus.")
    )
    min_likelihood_z: float | None = field(
        default=None, metadata=doc("Lowest z score of a sampled answer's log-likelihood (calibrated).")
    )
    min_decode_tps: float | None = field(
        default=None, metadata=doc("Slowest acceptable decode speed, tokens/s per stream (0: no bound).")
    )
    max_decode_tps: float | None = field(
        default=None, metadata=doc("Fastest plausible decode speed, tokens/s per stream (0: no bound).")
    )
    max_ttft_ms: int | None = field(
        default=None, metadata=doc("Longest acceptable time to first token, ms (0: no bound).")
    )
    attestation_slack: float | None = field(
        default=None,
        metadata=doc("Delivered decode speed may be this many times below the node's benchmark."),
    )
    exclude_points: int = field(default=6, metadata=doc("Strike severity at which a node is excluded."))
    ban_points: int = field(
        default=12,
        metadata=doc("Without a chain: strike severity at which a node is banned (else the chain's)."),
    )
    ban_validators: int = field(
        default=2,
        metadata=doc("Without a chain: distinct validators whose strikes a ban needs (else the chain's)."),
    )
    exclusion_epochs: int = field(default=1, metadata=doc("Epochs an exclusion lasts."))
    strike_window_epochs: int = field(
        default=7, metadata=doc("Without a chain: epochs a strike counts for (else the chain's).")
    )
    validators: tuple[str, ...] = field(
        default=(),
        metadata=doc("Without a chain: the validator addresses whose strikes count (this one is added)."),
    )
    standing_interval: float = field(
        default=60.0,
        metadata=doc(
            "Seconds between NodeStanding publications, and republications of the bans and strikes held; "
            "a ban's slashing decision is signed two of these (and 5 s) after the ban arrived."
        ),
    )
    chain_refresh: float = field(
        default=60.0, metadata=doc("Seconds between re-reads of the validator set from the chain.")
    )
    drain_timeout: float = field(
        default=30.0, metadata=doc("On SIGTERM/SIGINT, seconds challenges in flight may take to finish.")
    )
    rpc_url: str | None = settings.rpc_url_setting()
    deployment: Path | None = settings.deployment_setting()
    chain_dir: Path = settings.chain_dir_setting()
    submit_grace_seconds: float = field(
        default=600.0, metadata=doc("Seconds after an epoch ends that its receipts are still taken.")
    )
    sync_delay_seconds: float = field(
        default=60.0,
        metadata=doc("After the grace, seconds to wait (clock skew) before fetching receipts others hold."),
    )
    sync_timeout_seconds: float = field(
        default=120.0,
        metadata=doc(
            "Seconds a fetch of receipts from another validator waits for its next answer before giving"
            " up (it goes on while answers come, up to half an epoch; a full epoch takes minutes); also"
            " how long a validator catching up waits to find another one."
        ),
    )
    relay_stagger_seconds: float = field(
        default=30.0,
        metadata=doc("Each validator's rank waits this much longer before relaying a quorum's signatures."),
    )
    settlement_poll_seconds: float = field(
        default=15.0, metadata=doc("Seconds between looks at the chain and republications of signatures.")
    )
    announce_seconds: float = field(
        default=60.0, metadata=doc("Seconds between announcements of this validator's peer.")
    )
    keeper_interval_seconds: float = field(
        default=300.0,
        metadata=doc("With the buyback keeper role: seconds between buyback rounds (TWAP, then swap)."),
    )

    def __post_init__(self) -> None:
        positive = (
            "epoch_seconds",
            "concurrency",
            "challenge_max_tokens",
            "challenge_timeout",
            "challenges_per_host",
            "challenge_wallets",
            "standing_interval",
            "chain_refresh",
            "drain_timeout",
            "ban_validators",
            "exclusion_epochs",
            "strike_window_epochs",
            "sync_timeout_seconds",
            "settlement_poll_seconds",
            "announce_seconds",
            "keeper_interval_seconds",
        )
        settings.normalise_settings(
            self, positive=positive, error=ValidatorConfigError, local_only=("metrics",)
        )
        if self.threads < 0:
            raise ValidatorConfigError("threads must not be negative")
        for name in ("submit_grace_seconds", "sync_delay_seconds", "relay_stagger_seconds"):
            if getattr(self, name) < 0:
                raise ValidatorConfigError(f"{name} must not be negative, not {getattr(self, name)!r}")
        if not 16 <= self.challenge_max_tokens <= 256:
            raise ValidatorConfigError(
                "challenge_max_tokens must be in [16, 256]: its evidence must fit gossip"
            )

    @property
    def wallet_key_file(self) -> Path:
        return self.key_file or self.data_dir / KEY_FILE

    @property
    def challenge_wallet_file(self) -> Path:
        return self.challenge_key_file or self.data_dir / CHALLENGE_KEY_FILE

    def threshold_overrides(self) -> dict[str, Any]:
        """The check thresholds set here (unset ones keep the reference model's calibration)."""
        return {name: getattr(self, name) for name in THRESHOLD_SETTINGS if getattr(self, name) is not None}


SETTINGS = settings.DaemonSettings(
    ValidatorConfig, ENV_PREFIX, CONFIG_FILE, ValidatorConfigError, "dolphin validator"
)
env_name = SETTINGS.env_name
load_config = SETTINGS.load
render_config = SETTINGS.render
