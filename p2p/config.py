"""Host configuration: one frozen dataclass, validated on construction (h11 style), no I/O."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

import multiaddr

from p2p.errors import ConfigError


class Reachability(enum.Enum):
    """Whether other peers can dial this one directly."""

    PUBLIC = "public"  # dialable: serve the DHT, no relay reservation
    PRIVATE = "private"  # behind NAT or no listen address: DHT client, reserve on relays
    AUTO = "auto"  # ask a bootstrap peer to dial us back (p2p.reachability), then behave as above


class DhtMode(enum.Enum):
    """Kademlia role: servers answer queries, clients only ask (kad-dht spec, "Client and server mode")."""

    SERVER = "server"
    CLIENT = "client"
    AUTO = "auto"  # server exactly when reachable


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each kind of network await; nothing waits on a peer without one of these."""

    dial: float = 10.0
    stream_open: float = 10.0
    stream_io: float = 30.0
    dht_query: float = 15.0
    dht_stream_idle: float = 15.0
    """How long an inbound DHT stream may stay silent before it is reset (a client's next request on it
    comes at once; one that abandoned its lookup never sends one, nor closes the stream)."""
    reachability_probe: float = 5.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Connection and stream limits: a peer can use only so much of us.

    `inbound_streams_per_protocol` caps the streams others hold open with us per protocol at once (the
    DHT's too: py-libp2p's own cap of 12 is raised to it); a circuit's hop streams at a relay count against
    `relay_max_circuits` instead, a peer's gossip stream against `max_connections`: those live as long as
    what they carry.
    """

    max_connections: int = 256
    inbound_streams_per_protocol: int = 64
    dht_streams_per_peer: int = 16
    """DHT streams one peer may hold with us at once (a lookup asks a server for up to 8 records at once,
    beside its other lookups): no few peers can take every slot."""
    max_gossip_payload: int = 64 * 1024
    relay_max_reservations: int = 128
    relay_max_circuits: int = 256
    relay_circuit_bytes: int = 64 * 1024 * 1024
    relay_circuit_seconds: int = 3600


LOOPBACK_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
"""A host's listen address unless told otherwise: any free port on loopback, which nobody else can dial."""


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """Everything `open_host` needs. `listen` and `bootstrap` are multiaddr strings.

    An empty `listen` makes a peer with no direct listen address: it can only be reached through a relay.
    `announce` replaces the listen addresses in what others are told to dial (a port forward, a proxy:
    libp2p's announce addresses); they are written without /p2p/. Bootstrap addresses must end in
    /p2p/<peer-id>. `ephemeral_identity` gives the host a fresh peer key
    that is never written to `data_dir` (see `light_client`); otherwise the key in `data_dir` is used.
    `asks_only` marks a peer nobody needs to reach (see `light_client`): it skips what bootstrapping
    does for being reached — the reachability probe, relay reservations, the routing-table walk.
    """

    data_dir: Path
    listen: tuple[str, ...] = LOOPBACK_LISTEN
    announce: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = ()
    reachability: Reachability = Reachability.AUTO
    dht_mode: DhtMode = DhtMode.AUTO
    relay_service: bool = False
    gossip_heartbeat_seconds: float = 1.0
    ephemeral_identity: bool = False
    asks_only: bool = False
    hole_punching: bool = True
    """Move relayed connections to direct ones where the addresses allow (p2p.holepunch)."""
    hole_punch_private_addrs: bool = False
    """Dial loopback, private and link-local addresses a peer gives in a hole punch: tests, one LAN."""
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    limits: Limits = dataclasses.field(default_factory=Limits)

    @classmethod
    def light_client(cls, data_dir: Path, **options: Any) -> HostConfig:
        """A host for asking, not serving: a light client's, or a gateway's outbound peer.

        It only queries the DHT, on demand (its start-up is the bootstrap dial alone), and its peer id
        is thrown away with the host, so the nodes and relays it talks to cannot link one session to the
        next (open one host per session). What stays linkable is what the client signs: a session key
        across the requests it signs, and the paying wallet named in credit authorisations and so in every
        receipt a validator settles. `options` override the rest.
        """
        light: dict[str, Any] = {"dht_mode": DhtMode.CLIENT, "ephemeral_identity": True, "asks_only": True}
        options = light | options
        return cls(data_dir, **options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "listen", tuple(self.listen))
        object.__setattr__(self, "bootstrap", tuple(self.bootstrap))
        object.__setattr__(self, "announce", tuple(self.announce))
        for addr in self.announce:
            if _parse(addr, "announce").get_peer_id() is not None:
                raise ConfigError(f"announce address {addr!r} must not name a peer id (/p2p/...)")
        for addr in self.listen:
            parsed = _parse(addr, "listen")
            if "tcp" not in [p.name for p in parsed.protocols()]:
                raise ConfigError(f"listen address {addr!r}: only TCP listeners are supported")
        for addr in self.bootstrap:
            if _parse(addr, "bootstrap").get_peer_id() is None:
                raise ConfigError(f"bootstrap address {addr!r} must end in /p2p/<peer-id>")
        if not 0.1 <= self.gossip_heartbeat_seconds <= 10:
            raise ConfigError("gossip heartbeat must be between 0.1 and 10 seconds")


def _parse(addr: str, what: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as error:  # py-multiaddr raises several parse error types
        raise ConfigError(f"{what} address {addr!r} is not a multiaddr: {error}") from error
