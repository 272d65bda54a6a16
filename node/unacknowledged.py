"""No free answers: a client that takes answers and never countersigns their receipts is not served again
and again.

A receipt is what a node is paid for, and only the client can countersign it; a client could read the
whole answer and walk away, leaving the node nothing to claim. So the node keeps, per payer, the answers
whose receipts came back neither countersigned nor refused with a reason in the last `window_s` seconds
(the payer is the wallet whose credit authorisation covered the request; for an unpaid request, the peer
that sent it). Once a payer holds `budget` of them, its next requests are refused with the code
"unacknowledged" until the oldest ages out of the window. An answer counts only once the wait for its
receipt ended without a countersignature: answers whose receipts are still on their way do not, so a
client (a gateway) with several requests in flight at once is not refused for them; a freeloader gains
at most the answers it can hold in flight once, then its lapsed ones count.

Why a budget and not one strike: an honest client can lose a connection between the answer and its
countersignature, or refuse to countersign a bill it cannot check; a few such answers per hour cost the
node little. Why per wallet: a wallet must hold deposited credit to be served as paid, so new wallets cost
the freeloader money, while session keys and peers are free. The table is bounded (`max_payers`, oldest
forgotten first), so a flood of payers cannot grow it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["UnacknowledgedAnswers"]


@dataclass(eq=False)
class _Ticket:
    payer: bytes
    at: float


class UnacknowledgedAnswers:
    """Answers served and not countersigned, per payer (module docstring). Pure: the caller's clock."""

    def __init__(
        self,
        *,
        budget: int = 3,
        window_s: float = 3600.0,
        max_payers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget < 1:
            raise ValueError("the budget of unacknowledged answers must be at least 1")
        self.budget = budget
        self.window_s = window_s
        self.max_payers = max_payers
        self.clock = clock
        self._open: OrderedDict[bytes, deque[_Ticket]] = OrderedDict()

    def _pending(self, payer: bytes) -> deque[_Ticket] | None:
        tickets = self._open.get(payer)
        if tickets is None:
            return None
        horizon = self.clock() - self.window_s
        while tickets and tickets[0].at <= horizon:
            tickets.popleft()
        if not tickets:
            del self._open[payer]
            return None
        return tickets

    def owed(self, payer: bytes) -> int:
        """How many answers to `payer` in the window still wait for a countersignature."""
        tickets = self._pending(payer)
        return len(tickets) if tickets is not None else 0

    def allows(self, payer: bytes) -> bool:
        """Whether `payer` may be served now (it holds fewer than `budget` unacknowledged answers)."""
        return self.owed(payer) < self.budget

    def answered(self, payer: bytes) -> _Ticket:
        """An answer to `payer` is going out: `lapsed` with the returned ticket unless its receipt comes
        back countersigned."""
        return _Ticket(payer, self.clock())

    def lapsed(self, ticket: _Ticket) -> None:
        """The wait for the answer's receipt ended without a countersignature: it counts from now."""
        ticket.at = self.clock()
        tickets = self._pending(ticket.payer)
        if tickets is None:
            tickets = self._open[ticket.payer] = deque()
            while len(self._open) > self.max_payers:
                self._open.popitem(last=False)
        self._open.move_to_end(ticket.payer)
        tickets.append(ticket)
