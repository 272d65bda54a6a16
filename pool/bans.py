"""The gossiped ban list: which nodes validators banned, as every peer can check for itself.

`ban_validator` is the validator of BANS_TOPIC (validators publish, routers and validators read): a ban
must carry strike reports about the banned node signed by at least `min_strikes` distinct current
validators, so one validator cannot ban a node alone. `BanList` records the bans that pass and answers
"is this node banned now": a ban lasts while its notice is valid (its signed envelope's expiry, at most a
year; validators date a temporary ban to end with it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from p2p import Validator, signed_message_validator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import BanNotice, eth_signer

__all__ = ["BanList", "IsValidator", "ban_validator"]

IsValidator = Callable[[bytes], bool]
"""Whether an Ethereum address is a current validator (read from the chain by the caller)."""


def ban_validator(
    domain: TypedDomain,
    is_validator: IsValidator,
    *,
    min_strikes: int = 2,
    on_accept: Callable[[envelope.Signed[BanNotice]], None] | None = None,
) -> Validator:
    """The validator of BANS_TOPIC: a ban needs strikes from `min_strikes` distinct current validators,
    signed under `domain` (the strike reports' EIP-712 domain). `on_accept` records each accepted ban."""
    if min_strikes < 1:
        raise ValueError("a ban needs at least one strike")

    def authorise(signed: envelope.Signed[BanNotice]) -> bool:
        signers = {eth_signer(strike, domain) for strike in signed.message.strikes}
        return len({s for s in signers if is_validator(s)}) >= min_strikes

    return signed_message_validator(BanNotice, authorise=authorise, on_accept=on_accept)


class BanList:
    """Banned node keys, from accepted ban notices; `validate` is the topic validator to subscribe with."""

    def __init__(self, domain: TypedDomain, is_validator: IsValidator, *, min_strikes: int = 2) -> None:
        self._until_ms: dict[bytes, int] = {}
        self.validate = ban_validator(domain, is_validator, min_strikes=min_strikes, on_accept=self._record)

    def _record(self, signed: envelope.Signed[BanNotice]) -> None:
        node_key = signed.message.node_key
        self._until_ms[node_key] = max(self._until_ms.get(node_key, 0), signed.expires_at_ms)

    def banned(self, node_key: bytes, now_ms: int | None = None) -> bool:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        until = self._until_ms.get(node_key)
        if until is not None and until <= now_ms:
            del self._until_ms[node_key]
            return False
        return until is not None

    def __len__(self) -> int:
        return len(self._until_ms)
