"""The validator daemon's parts: strike and ban gossip, and the money loop (receipts, settlement, keeper).

- `gossip`: validators of the strike and ban topics (current validators only; bans need several)
- `settlement`: pure epoch settlement: receipts -> debits, base rewards, the engine, the rewards root
- `errors`: `ValidatorError` and its subclasses
"""

from validator.errors import SettlementError, ValidatorError
from validator.settlement import (
    Carry,
    DebitBatch,
    EpochMarket,
    EpochSettlement,
    ReceiptFacts,
    receipt_commitment,
    receipt_facts,
    settle_epoch,
)

__all__ = [
    "Carry",
    "DebitBatch",
    "EpochMarket",
    "EpochSettlement",
    "ReceiptFacts",
    "SettlementError",
    "ValidatorError",
    "receipt_commitment",
    "receipt_facts",
    "settle_epoch",
]
