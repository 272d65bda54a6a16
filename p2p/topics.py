"""The topic names and protocol ids p2p uses, taken from their one home, `protocols.ids`.

`protocols` owns every wire-level name (DESIGN.md); this module re-exports the ones the host needs, adds
the parsing the host does (which pool does a topic belong to) and the one protocol that is p2p's own,
the reachability probe.
"""

from __future__ import annotations

from protocols.errors import ProtocolError
from protocols.ids import (
    BANS_TOPIC,
    DHT_PROTOCOL,
    SETTLEMENT_TOPIC,
    STRIKES_TOPIC,
    attestation_topic,
    pool_topic,
)

__all__ = [
    "BANS_TOPIC",
    "KAD_PROTOCOL",
    "MANIFEST_HASH_SIZE",
    "REACHABILITY_PROTOCOL",
    "SETTLEMENT_TOPIC",
    "STRIKES_TOPIC",
    "attestation_topic",
    "manifest_hash_of_pool_topic",
    "pool_topic",
]

MANIFEST_HASH_SIZE = 32
KAD_PROTOCOL = DHT_PROTOCOL
REACHABILITY_PROTOCOL = "/dolphin/reachability/1.0.0"

_POOL_TOPIC_PREFIX = "/dolphin/pool/"


def manifest_hash_of_pool_topic(topic: str) -> bytes | None:
    """The manifest hash a pool topic names, or None when `topic` is not exactly a pool topic."""
    if not topic.startswith(_POOL_TOPIC_PREFIX):
        return None
    hex_part = topic[len(_POOL_TOPIC_PREFIX) :].split("/", 1)[0]
    try:
        manifest_hash = bytes.fromhex(hex_part)
        canonical = pool_topic(manifest_hash)  # round trip through the one definition of the format
    except (ValueError, ProtocolError):
        return None
    return manifest_hash if canonical == topic else None
