"""Receipts to the validators: the node hands its paid receipts to every current validator's peer.

For each validator peer in the directory (pool.validator_peers), the node sends the receipts that peer has not
given a final verdict on, oldest first, in batches of up to MAX_RECEIPT_BATCH (RECEIPT_PROTOCOL, one batch
per stream), and records the verdicts in the ledger once they arrive: stored, already held, or refused
(the reason is logged). A batch that fails on the way (the validator is down, stalls past the deadline,
or answers nonsense) is simply sent again on the next round; the validator keeps a receipt once however
often it arrives.

Rounds run right after each epoch ends (the validators close an epoch a grace period after its end, so
this is when it matters), every `interval` seconds in between, and once more when the daemon drains.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import trio

from node.ledger import Ledger, LedgerError
from p2p import Dialer, P2PError
from pool.validator_peers import ValidatorDirectory, ValidatorPeer
from protocols.errors import ProtocolError
from protocols.ids import RECEIPT_PROTOCOL
from protocols.messages import MAX_RECEIPT_BATCH, ReceiptBatch, ReceiptBatchAck
from protocols.schema import decode_message, encode_message

__all__ = ["ReceiptSubmitter", "SubmissionStatistics"]

log = logging.getLogger(__name__)

MAX_ACK_BYTES = 128 * 1024
BATCH_TIMEOUT_S = 60.0
EPOCH_END_DELAY_S = (0.5, 2.0)
"""A random delay after an epoch ends before submitting, so a pool's nodes do not all arrive at once."""


@dataclass
class SubmissionStatistics:
    rounds: int = 0
    batches: int = 0
    failures: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


class ReceiptSubmitter:
    """Sends the ledger's paid receipts to the validators in `directory` (see the module docstring)."""

    def __init__(
        self,
        host: Dialer,
        ledger: Ledger,
        directory: ValidatorDirectory,
        *,
        interval: float,
        epoch_ms: int,
        batch_size: int = MAX_RECEIPT_BATCH,
        timeout: float = BATCH_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.ledger = ledger
        self.directory = directory
        self.interval = interval
        self.epoch_ms = epoch_ms
        self.batch_size = min(batch_size, MAX_RECEIPT_BATCH)
        self.timeout = timeout
        self._statistics = SubmissionStatistics()
        self._round = trio.Lock()

    def statistics(self) -> SubmissionStatistics:
        return self._statistics

    async def submit_all(self) -> int:
        """One round: every known validator gets what it lacks. Returns the verdicts received."""
        async with self._round:
            self._statistics.rounds += 1
            received = 0
            for peer in self.directory.peers():
                received += await self._submit_to(peer)
            return received

    async def _submit_to(self, peer: ValidatorPeer) -> int:
        received = 0
        # The current and the previous epoch: validators take an epoch's receipts until a grace period
        # after it ends, and refuse older ones.
        now_ms = time.time_ns() // 1_000_000
        since_ms = (now_ms // self.epoch_ms - 1) * self.epoch_ms
        while True:
            pending = await self.ledger.unsubmitted(peer.peer_id, self.batch_size, since_ms=since_ms)
            if not pending:
                return received
            try:
                with trio.fail_after(self.timeout):
                    ack = await self._send(peer, [data for _, data in pending])
            except (P2PError, ProtocolError, trio.TooSlowError) as exc:
                self._statistics.failures += 1
                log.info("receipts to validator %s failed this round: %s", peer.peer_id, exc)
                return received
            if len(ack.verdicts) != len(pending):
                self._statistics.failures += 1
                log.warning(
                    "validator %s answered %d verdicts for %d receipts",
                    peer.peer_id,
                    len(ack.verdicts),
                    len(pending),
                )
                return received
            verdicts = [
                (digest, v.status, v.reason) for (digest, _), v in zip(pending, ack.verdicts, strict=True)
            ]
            await self.ledger.record_submissions(peer.peer_id, verdicts)
            for _, status, reason in verdicts:
                self._statistics.verdicts[status] = self._statistics.verdicts.get(status, 0) + 1
                if status == "refused":
                    log.warning("validator %s refused a receipt: %s", peer.peer_id, reason)
            self._statistics.batches += 1
            received += len(verdicts)

    async def _send(self, peer: ValidatorPeer, receipts: list[bytes]) -> ReceiptBatchAck:
        await self.host.connect_any(peer.peer_id, peer.addrs)
        stream = await self.host.open_stream(peer.peer_id, RECEIPT_PROTOCOL)
        try:
            await stream.write_message(encode_message(ReceiptBatch(receipts=tuple(receipts))))
            return decode_message(await stream.read_message(MAX_ACK_BYTES), ReceiptBatchAck)
        finally:
            await stream.close()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Submit after each epoch ends and every `interval` seconds; never returns."""
        task_status.started()
        next_round = trio.current_time() + self.interval
        while True:
            now_ms = time.time_ns() // 1_000_000
            to_epoch_end = (self.epoch_ms - now_ms % self.epoch_ms) / 1000 + random.uniform(
                *EPOCH_END_DELAY_S
            )
            wake = min(next_round, trio.current_time() + to_epoch_end)
            await trio.sleep_until(wake)
            try:
                await self.submit_all()
            except LedgerError as exc:  # logged; the next round tries again
                log.error("a round of receipt submissions failed: %s", exc)
            next_round = trio.current_time() + self.interval
