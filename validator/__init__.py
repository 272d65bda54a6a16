"""The validator daemon: election by bonded stake, sampling, checks, strike reports, bans and settlement.

- `gossip`: validators of the strike and ban topics (current validators only; bans need several)
- `settlement`: receipts -> base rewards -> the reward engine -> the Merkle root validators sign
- `errors`: `ValidatorError` and its subclasses
"""

from validator.errors import SettlementError, ValidatorError
from validator.settlement import EpochSettlement, base_rewards, settle_epoch, work_by_operator

__all__ = [
    "EpochSettlement",
    "SettlementError",
    "ValidatorError",
    "base_rewards",
    "settle_epoch",
    "work_by_operator",
]
