"""Who pays: clients' on-chain credit, cached, and the node's policy for requests nobody pays for.

A request may carry a `CreditAuthorisation`: a client wallet lets the request's session key spend up to
`max_credits` on this model. `NodeExchange.accept` checks its EIP-712 signature against the Credits
contract's domain, that it names the request's signer and model, and that it has not expired by the
node's clock. What is left is whether the wallet's spendable credit in the Credits contract (its credit
less any pending withdrawal request, Credits.spendableOf: what settlement will count too) covers what
the request can cost: the model's price (Credits.priceOf, per 1M tokens) times the most tokens its receipt
may count (the prompt's bound plus max_tokens), at most the authorised amount — not the whole
authorisation, which a client may cap at its whole credit, so that one debit would otherwise leave every
later answer unpaid.
Those are chain reads, so balances and prices are cached and refreshed on a timer in a worker thread, never
on the request's path once known. A wallet or model seen for the first time is read once, with a deadline.

A request whose authorisation does not verify is refused (it is forged). One whose wallet's credit does
not cover it, or that carries none, is unpaid: the node serves it only if its policy says so, and its
receipt then names no paying client.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio

from chain.errors import ChainError
from protocols.eth import TypedDomain
from protocols.inference import prompt_token_bound
from protocols.messages import InferenceRequest

__all__ = ["CreditBook", "PaymentPolicy", "most_a_request_costs"]

log = logging.getLogger(__name__)


class CreditBook:
    """On-chain credit balances by wallet; `read_credit(address)` is a blocking chain call."""

    def __init__(
        self,
        read_credit: Callable[[bytes], int],
        *,
        read_price: Callable[[bytes], int] | None = None,
        refresh_s: float = 30.0,
        read_timeout_s: float = 5.0,
        max_wallets: int = 10_000,
    ) -> None:
        self._read_credit = read_credit
        self._read_price = read_price
        self.refresh_s = refresh_s
        self.read_timeout_s = read_timeout_s
        self.max_wallets = max_wallets
        self._balances: OrderedDict[bytes, tuple[int, float]] = OrderedDict()  # wallet -> (credit, read at)
        self._prices: dict[bytes, int] = {}  # model -> price per 1M tokens

    async def _chain_read(self, read: Callable[[bytes], int], key: bytes, what: str) -> int | None:
        try:
            with trio.fail_after(self.read_timeout_s):
                return await trio.to_thread.run_sync(read, key, abandon_on_cancel=True)
        except (ChainError, trio.TooSlowError) as exc:
            log.warning("could not read the %s of 0x%s: %s", what, key.hex(), exc)
            return None

    async def price(self, model: bytes) -> int | None:
        """The model's price per 1M tokens (None: no price reader, or the chain cannot tell)."""
        if self._read_price is None:
            return None
        if model not in self._prices:
            price = await self._chain_read(self._read_price, model, "price")
            if price is None:
                return None
            self._prices[model] = price
        return self._prices[model]

    async def _read(self, wallet: bytes) -> int | None:
        credit = await self._chain_read(self._read_credit, wallet, "credit")
        if credit is None:
            return None
        self._balances[wallet] = (credit, time.monotonic())
        self._balances.move_to_end(wallet)
        while len(self._balances) > self.max_wallets:
            self._balances.popitem(last=False)
        return credit

    async def covers(self, wallet: bytes, amount: int) -> bool | None:
        """Whether `wallet`'s credit covers `amount`; None when it cannot be known (chain unreachable)."""
        known = self._balances.get(wallet)
        credit = known[0] if known is not None else await self._read(wallet)
        if credit is None:
            return None
        return credit > 0 and credit >= amount

    async def serve_refreshes(self) -> None:
        """Re-read every known wallet and price each `refresh_s` seconds; never returns."""
        while True:
            await trio.sleep(self.refresh_s)
            for wallet in list(self._balances):
                await self._read(wallet)
            for model in list(self._prices):
                if self._read_price is not None:
                    price = await self._chain_read(self._read_price, model, "price")
                    if price is not None:
                        self._prices[model] = price


def most_a_request_costs(price_per_million: int, request: InferenceRequest) -> int:
    """The most settlement can charge for `request`'s answer: its price times the most tokens its receipt
    may count (the prompt's token bound plus max_tokens), rounded up."""
    tokens = prompt_token_bound(request.messages) + request.max_tokens
    return -(-price_per_million * tokens // 1_000_000)


@dataclass(frozen=True)
class PaymentPolicy:
    """`credit_domain` is the Credits contract's EIP-712 domain (None without a chain: nothing can be
    verified, every request is unpaid); `book` reads balances; `serve_unpaid` whether unpaid requests are
    answered."""

    credit_domain: TypedDomain | None = None
    book: CreditBook | None = None
    serve_unpaid: bool = True
