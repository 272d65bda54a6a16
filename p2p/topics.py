"""Names of every GossipSub topic and p2p protocol id the Dolphin Network uses, in one place.

Topic names follow the libp2p convention of a path with a trailing version, so a later, incompatible
message format gets a new topic instead of confusing old peers.
"""

from __future__ import annotations

MANIFEST_HASH_SIZE = 32

ATTESTATIONS_TOPIC = "/dolphin/attestations/1"
STRIKES_TOPIC = "/dolphin/strikes/1"
BANS_TOPIC = "/dolphin/bans/1"
_POOL_TOPIC_PREFIX = "/dolphin/pool/"
_POOL_TOPIC_SUFFIX = "/1"

KAD_PROTOCOL = "/dolphin/kad/1.0.0"
REACHABILITY_PROTOCOL = "/dolphin/reachability/1.0.0"


def pool_topic(manifest_hash: bytes) -> str:
    """The pool-membership topic of one model, named by its 32-byte manifest hash (shown hex)."""
    if len(manifest_hash) != MANIFEST_HASH_SIZE:
        raise ValueError(f"a manifest hash is {MANIFEST_HASH_SIZE} bytes, got {len(manifest_hash)}")
    return f"{_POOL_TOPIC_PREFIX}{manifest_hash.hex()}{_POOL_TOPIC_SUFFIX}"


def manifest_hash_of_pool_topic(topic: str) -> bytes | None:
    """The manifest hash a pool topic names, or None when `topic` is not a well-formed pool topic."""
    if not (topic.startswith(_POOL_TOPIC_PREFIX) and topic.endswith(_POOL_TOPIC_SUFFIX)):
        return None
    hex_part = topic[len(_POOL_TOPIC_PREFIX) : -len(_POOL_TOPIC_SUFFIX)]
    if len(hex_part) != 2 * MANIFEST_HASH_SIZE or hex_part != hex_part.lower():
        return None
    try:
        return bytes.fromhex(hex_part)
    except ValueError:
        return None
