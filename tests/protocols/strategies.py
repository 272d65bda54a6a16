"""Hypothesis strategies for every schema, derived from the field specs themselves.

Sizes are capped (the specs allow megabytes) so that properties run fast; the limits themselves are tested
separately with hand-made edge cases.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from protocols import eth, messages
from protocols.schema import U256, Bytes, Choice, Maybe, Nested, Record, Seq, SInt, Spec, Text, UInt

MAX_BYTES = 48
MAX_TEXT = 24
MAX_ITEMS = 3


def spec_strategy(spec: Spec) -> st.SearchStrategy:
    if isinstance(spec, UInt):
        return st.integers(0, spec.max_value)
    if isinstance(spec, SInt):
        return st.integers(-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1)
    if isinstance(spec, U256):
        return st.integers(0, (1 << 256) - 1)
    if isinstance(spec, Bytes):
        return st.binary(min_size=spec.min_size, max_size=min(spec.max_size, max(spec.min_size, MAX_BYTES)))
    if isinstance(spec, Text):
        # At most 4 UTF-8 bytes a character, at least 1: these bounds need no filtering.
        return st.text(min_size=spec.min_bytes, max_size=min(MAX_TEXT, spec.max_bytes // 4))
    if isinstance(spec, Choice):
        return st.sampled_from(sorted(spec.values))
    if isinstance(spec, Seq):
        return st.lists(
            spec_strategy(spec.item), min_size=spec.min_len, max_size=min(spec.max_len, MAX_ITEMS)
        ).map(tuple)
    if isinstance(spec, Nested):
        return record_strategy(spec.cls)
    if isinstance(spec, Maybe):
        return st.none() | spec_strategy(spec.inner)
    return st.booleans()  # Bool


def _fix_cross_field_rules(cls: type[Record], values: dict) -> dict:
    """Make randomly drawn fields obey the rules that span fields (each record's `_check`)."""
    pairs = cls is messages.ResponseChunk
    if pairs and len(values["logprobs_micro"]) != len(values["token_ids"]):
        values["logprobs_micro"] = tuple(-i for i in range(len(values["token_ids"])))
    if cls is messages.ResponseChunk:  # k alternatives for each token id, k drawn from what came out
        per_token = len(values["top_ids"]) // max(1, len(values["token_ids"])) if values["token_ids"] else 0
        values["top_ids"] = values["top_ids"][: per_token * len(values["token_ids"])]
        values["top_logprobs_micro"] = tuple(-i for i in range(len(values["top_ids"])))
    if cls is messages.StrikeReport and values["evidence"]:
        values["evidence_hash"] = messages.evidence_hash(values["evidence"])
    if cls is messages.PoolHeartbeat and values["binding"] is not None:
        values["binding"] = dataclasses.replace(
            values["binding"], peer_id_hash=eth.keccak256(values["peer_id"])
        )
    if cls is messages.NodeStanding:
        values["failures"] = min(values["failures"], values["checks"])
    if cls in (messages.SettlementSignature, messages.SettlementProposal):
        members = tuple(sorted(set(values["next_validators"])))
        values["next_validators"] = members
        values["next_weights"] = tuple(max(1, w) for w in values["next_weights"][: len(members)])
        values["next_weights"] += (1,) * (len(members) - len(values["next_weights"]))
    if cls is messages.ReceiptAck:
        values["error"] = None if values["stored"] else values["error"] or "not stored"
    if cls is messages.CreditDebitSignature:
        count = min(len(values["users"]), len(values["amounts"]))
        values["users"], values["amounts"] = values["users"][:count], values["amounts"][:count]
    if cls is messages.Receipt:
        values["tokens_out"] = min(values["tokens_out"], values["max_tokens"])
        values["request_bytes"] = max(values["request_bytes"], values["tokens_in"])
        values["client"] = values["credit"].client if values["credit"] is not None else None
    if cls is messages.TokenizerFileChunk and values["error"] is not None:
        values["data"], values["size"] = b"", 0
    if cls is messages.ReceiptVerdict:
        values["reason"] = (values["reason"] or "refused") if values["status"] == "refused" else None
    if cls is messages.ReceiptDigests:
        values["digests"] = tuple(sorted(set(values["digests"])))
    if cls is messages.RewardsTreePage:
        accounts = tuple(sorted(set(values["accounts"])))
        count = min(len(accounts), len(values["amounts"]))
        values["accounts"], values["amounts"] = accounts[:count], values["amounts"][:count]
    if cls is messages.BanNotice:
        values["strikes"] = tuple(
            dataclasses.replace(s, node_key=values["node_key"], operator=values["operator"])
            for s in values["strikes"]
        )
    return values


def record_strategy(cls: type[Record]) -> st.SearchStrategy:
    fields = st.fixed_dictionaries({name: spec_strategy(spec) for name, spec in cls.__specs__.items()})
    return fields.map(lambda values: cls(**_fix_cross_field_rules(cls, dict(values))))


# Plain msgpack values of every kind, including the ones the codec refuses (floats, ext types).
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
