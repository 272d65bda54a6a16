"""The libp2p host of the Dolphin Network: identity, transports, DHT, GossipSub topics and relays.

All py-libp2p hardening lives here; the rest of the project uses only the names below.

- `host`: `open_host(config)` -> `DolphinHost` (streams with deadlines, shielded handlers, relays, ping)
- `config`: `HostConfig` (and `HostConfig.light_client`), `Timeouts`, `Limits`, `Reachability`, `DhtMode`
- `identity`: the persistent Ed25519 key in the data directory, or an ephemeral one (light clients)
- `streams`: `Stream`, a libp2p stream whose every await has a deadline
- `noise`: Noise messages written whole, whatever cancels their writer (py-libp2p broke the connection)
- `multistream`: protocol selection in one round trip (header and proposal sent together)
- `interfaces`: `MessageStream`, `StreamOpener`, `Dialer`: what the floors above use of a stream and a host
- `memory`: `open_memory_network()`, hosts joined in memory behind those interfaces (tests without sockets)
- `gossip`: GossipSub facade (`subscribe(topic, validator)`, `publish`), `Verdict`, scoring
- `validators`: `signed_message_validator`, the shared checks of topics carrying signed envelopes
- `dht`: Kademlia on /dolphin/kad/1.0.0 with signed pool records (`put_record`, `get_records`)
- `records`: signed pool records (`protocols.envelope` around `PoolAddresses`), verified (pure)
- `reachability`: the dial-back probe that tells a peer whether it is reachable
- `holepunch`: DCUtR, a relayed connection moved to a direct one (the peer behind NAT dials out)
- `topics`: the topic names and protocol ids p2p uses (from `protocols.ids`), pool-topic parsing
- `daemon`: `serve_peer(config, ...)`, the long-running form with ready.json and signal handling
- `ports`: listening ports checked before anything slow, and never shared with another process
- `processes`: `DaemonProcess`, our daemons as OS processes (the demo's network, tests); `relay_process`
- `testing`: factories for tests and benchmarks (subprocess peers, in-process host groups)
- `errors`: `P2PError` and its subclasses
"""

from p2p.config import LOOPBACK_LISTEN, DhtMode, HostConfig, Limits, Reachability, Timeouts
from p2p.errors import (
    BootstrapUnreachable,
    ConfigError,
    DialError,
    GossipError,
    IdentityError,
    MessageTooLarge,
    P2PError,
    ProtocolNotSupported,
    RecordError,
    StreamError,
    StreamTimeout,
)
from p2p.gossip import GossipMessage, Subscription, Validator, Verdict, accept_all
from p2p.host import DolphinHost, open_host
from p2p.interfaces import Dialer, MessageStream, StreamOpener
from p2p.records import PoolRecord, decode_pool_record, sign_pool_record
from p2p.streams import Stream
from p2p.topics import (
    BANS_TOPIC,
    SETTLEMENT_TOPIC,
    STRIKES_TOPIC,
    attestation_topic,
    manifest_hash_of_pool_topic,
    pool_topic,
)
from p2p.validators import signed_message_validator

__all__ = [
    "BANS_TOPIC",
    "LOOPBACK_LISTEN",
    "SETTLEMENT_TOPIC",
    "STRIKES_TOPIC",
    "BootstrapUnreachable",
    "ConfigError",
    "DhtMode",
    "DialError",
    "Dialer",
    "DolphinHost",
    "GossipError",
    "GossipMessage",
    "HostConfig",
    "IdentityError",
    "Limits",
    "MessageStream",
    "MessageTooLarge",
    "P2PError",
    "PoolRecord",
    "ProtocolNotSupported",
    "Reachability",
    "RecordError",
    "Stream",
    "StreamError",
    "StreamOpener",
    "StreamTimeout",
    "Subscription",
    "Timeouts",
    "Validator",
    "Verdict",
    "accept_all",
    "attestation_topic",
    "decode_pool_record",
    "manifest_hash_of_pool_topic",
    "open_host",
    "pool_topic",
    "sign_pool_record",
    "signed_message_validator",
]
