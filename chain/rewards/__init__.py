"""The reward boost engine of docs/rewards.md and its exchange format.

- params:   RewardParams, the governance parameters with the spec's defaults and their bounds
- base:     base rewards: an epoch's emission (bounded by its paid revenue) and its pro-rata split
- engine:   pay_epoch and close_epoch, pure functions over frozen account records
- exchange: the JSON exchange format (decode_document, encode_result), strict and byte-stable
- simulate: a synthetic operator population run through the engine, its table and plot
"""

from chain.rewards.engine import (
    AccountClose,
    AccountEpoch,
    AccountState,
    Competition,
    EpochClose,
    EpochInput,
    Snapshot,
    check_account,
    close_epoch,
    default_snapshot,
    pay_epoch,
)
from chain.rewards.exchange import decode_document, encode_document, encode_result, format_multiplier
from chain.rewards.params import POD, RewardParams

__all__ = [
    "POD",
    "AccountClose",
    "AccountEpoch",
    "AccountState",
    "Competition",
    "EpochClose",
    "EpochInput",
    "RewardParams",
    "Snapshot",
    "check_account",
    "close_epoch",
    "decode_document",
    "default_snapshot",
    "encode_document",
    "encode_result",
    "format_multiplier",
    "pay_epoch",
]
