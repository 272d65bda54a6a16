"""Protocol ids, GossipSub topics and the DHT prefix of the Dolphin Network.

Stream protocols follow libp2p's `/name/semver` convention (negotiated with multistream-select). A
`<version>` bump in the last component is a breaking change; new fields in open messages are not.
"""

from __future__ import annotations

import hashlib

from protocols.errors import SchemaError

__all__ = [
    "AUDIT_PROTOCOL",
    "BANS_TOPIC",
    "DECISIONS_TOPIC",
    "DHT_PROTOCOL",
    "HEARTBEAT_PROTOCOL",
    "INFERENCE_PROTOCOL",
    "MODELS_RECORD",
    "MODELS_TOPIC",
    "RECEIPT_PROTOCOL",
    "RECEIPT_SYNC_PROTOCOL",
    "REPORTS_TOPIC",
    "REWARDS_TREE_PROTOCOL",
    "SETTLEMENT_TOPIC",
    "STANDING_TOPIC",
    "STRIKES_TOPIC",
    "TOKENIZER_PROTOCOL",
    "VALIDATORS_RECORD",
    "VALIDATORS_TOPIC",
    "attestation_topic",
    "model_name_key",
    "model_name_topic",
    "pool_topic",
]

# Streams: one request per stream; frames are uvarint length-prefixed (`framing`). Validators check nodes
# through INFERENCE_PROTOCOL like any client: a protocol of their own would tell a node when it is watched.
INFERENCE_PROTOCOL = "/dolphin/inference/1.0.0"  # sealed request in, encrypted answer stream out
RECEIPT_PROTOCOL = "/dolphin/receipt/1.0.0"  # a node submits countersigned receipts to a validator
RECEIPT_SYNC_PROTOCOL = "/dolphin/receipt-sync/1.0.0"  # a validator fetches receipts another one holds
REWARDS_TREE_PROTOCOL = "/dolphin/rewards-tree/1.0.0"  # a claimer fetches a settled epoch's rewards tree
# A client hands a validator one of its real answers (AnswerEvidence) to check, after the validator's peer
# proved itself with its ValidatorAnnouncement; the node that answered is not on this path (pool.audits).
AUDIT_PROTOCOL = "/dolphin/audit/1.0.0"
# A client without a model's folder fetches its manifest and tokenizer files from a pool member, to count
# bills exactly; it checks them against the model id (protocols.tokenizers), so any member will do.
TOKENIZER_PROTOCOL = "/dolphin/tokenizer/1.0.0"
# A peer that has just dialled a pool member asks it for its latest heartbeat (the signed envelope it
# gossips), instead of waiting for the next one on the pool topic: a cold client's first request needs it.
HEARTBEAT_PROTOCOL = "/dolphin/heartbeat/1.0.0"

# A DHT of our own (not the public IPFS one): kad-dht with a custom protocol prefix, per the kad-dht spec.
DHT_PROTOCOL = "/dolphin/kad/1.0.0"

# GossipSub topics. Payloads are signed envelopes; per-model topics keep each pool's chatter to itself.
STRIKES_TOPIC = "/dolphin/strikes/1"
BANS_TOPIC = "/dolphin/bans/1"
DECISIONS_TOPIC = "/dolphin/strike-decisions/1"  # validators' StrikeDecisionSignatures, gathered to a quorum
STANDING_TOPIC = "/dolphin/standing/1"  # validators' NodeStanding verdicts, which routers read
REPORTS_TOPIC = "/dolphin/reports/1"  # users' UserReports, which validators read
SETTLEMENT_TOPIC = "/dolphin/settlement/1"  # validators' signatures on epoch roots and credit debits
VALIDATORS_TOPIC = "/dolphin/validators/1"  # which peer speaks for which validator wallet
# The DHT pool-record key under which validators' peers publish their addresses (a pool of their own), so
# that nodes and validators can connect to them and hear VALIDATORS_TOPIC.
VALIDATORS_RECORD = hashlib.sha256(b"dolphin-network:validators").digest()
# What the network serves: every node heartbeats MODELS_TOPIC too and stores its addresses under
# MODELS_RECORD, so a gateway or `dolphin model list` finds every pool without knowing a model first.
MODELS_TOPIC = "/dolphin/models/1"
MODELS_RECORD = hashlib.sha256(b"dolphin-network:models").digest()


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


_MODEL_NAME_DOMAIN = b"dolphin-network:model-name:v1\0"


def model_name_key(name: str) -> bytes:
    """The 32-byte key a model's manifest name is looked up by: its DHT pool records are also stored under
    this key, so a client that knows only the name finds the pool's members (p2p.dht)."""
    if type(name) is not str or not name or len(name.encode()) > 128:
        raise SchemaError("a model name is 1 to 128 bytes of text")
    return hashlib.sha256(_MODEL_NAME_DOMAIN + name.encode()).digest()


def model_name_topic(name: str) -> str:
    """Heartbeats of every pool whose nodes serve a manifest called `name`: the heartbeats name the model
    id, so a client subscribed here learns which ids go by that name (several may: forks, or liars)."""
    return f"/dolphin/model-name/{model_name_key(name).hex()}/1"
