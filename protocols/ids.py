"""Protocol ids, GossipSub topics and the DHT prefix of the Dolphin Network.

Stream protocols follow libp2p's `/name/semver` convention (negotiated with multistream-select). A
`<version>` bump in the last component is a breaking change; new fields in open messages are not.
"""

from __future__ import annotations

import hashlib

from protocols.errors import SchemaError

__all__ = [
    "BANS_TOPIC",
    "CHALLENGE_PROTOCOL",
    "DHT_PROTOCOL",
    "INFERENCE_PROTOCOL",
    "RECEIPT_PROTOCOL",
    "RECEIPT_SYNC_PROTOCOL",
    "REPORTS_TOPIC",
    "SETTLEMENT_TOPIC",
    "STANDING_TOPIC",
    "STRIKES_TOPIC",
    "VALIDATORS_RECORD",
    "VALIDATORS_TOPIC",
    "attestation_topic",
    "pool_topic",
]

# Streams: one request per stream; frames are uvarint length-prefixed (`framing`).
INFERENCE_PROTOCOL = "/dolphin/inference/1.0.0"  # sealed request in, encrypted answer stream out
RECEIPT_PROTOCOL = "/dolphin/receipt/1.0.0"  # a node submits countersigned receipts to a validator
RECEIPT_SYNC_PROTOCOL = "/dolphin/receipt-sync/1.0.0"  # a validator fetches receipts another one holds
CHALLENGE_PROTOCOL = "/dolphin/challenge/1.0.0"  # validator challenge in, signed response out

# A DHT of our own (not the public IPFS one): kad-dht with a custom protocol prefix, per the kad-dht spec.
DHT_PROTOCOL = "/dolphin/kad/1.0.0"

# GossipSub topics. Payloads are signed envelopes; per-model topics keep each pool's chatter to itself.
STRIKES_TOPIC = "/dolphin/strikes/1"
BANS_TOPIC = "/dolphin/bans/1"
STANDING_TOPIC = "/dolphin/standing/1"  # validators' NodeStanding verdicts, which routers read
REPORTS_TOPIC = "/dolphin/reports/1"  # users' UserReports, which validators read
SETTLEMENT_TOPIC = "/dolphin/settlement/1"  # validators' signatures on epoch roots and credit debits
VALIDATORS_TOPIC = "/dolphin/validators/1"  # which peer speaks for which validator wallet
# The DHT pool-record key under which validators' peers publish their addresses (a pool of their own), so
# that nodes and validators can connect to them and hear VALIDATORS_TOPIC.
VALIDATORS_RECORD = hashlib.sha256(b"dolphin-network:validators").digest()


def _model_hex(model: bytes) -> str:
    if type(model) is not bytes or len(model) != 32:
        raise SchemaError("a model manifest hash is 32 bytes")
    return model.hex()


def pool_topic(model: bytes) -> str:
    """Heartbeats of the pool serving the model with this manifest hash."""
    return f"/dolphin/pool/{_model_hex(model)}/1"


def attestation_topic(model: bytes) -> str:
    """Benchmark attestations for the model with this manifest hash."""
    return f"/dolphin/attest/{_model_hex(model)}/1"
