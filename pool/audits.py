"""Organic audits: a client hands a random sample of its real answers to a validator, never through the node.

Validators' own challenges can only catch a node that cannot tell them from users. So the project's clients
(the light client, and through it `dolphin ask` and `dolphin gateway`) also share a random sample of the
answers they actually got: the request envelope they signed (prompt included), the answer's chunks as
decrypted, and the node's signed receipt — `AnswerEvidence`, which any validator can re-check and which
proves what that node answered to that request. A node cannot learn which answers were shared: the
evidence goes from the client's peer straight to a validator's peer over AUDIT_PROTOCOL (Noise end to end,
through relays too), after the answer is complete and countersigned, and the node is on no part of that path.

Who is a validator: the client dials a peer from the validators' DHT record (VALIDATORS_RECORD); that peer
first sends its `ValidatorAnnouncement` envelope, which must be signed by the peer itself, bind it to a
wallet by that wallet's EIP-712 signature (ValidatorQuorum domain), be unexpired, and name a wallet of the
current validator set (read from the chain). Only then does the client send the answer; otherwise it tries
another validator. Without a chain there is no validator set, so nothing is shared.

How much: each completed answer is shared with probability `rate` (5% by default), `suspect_rate` (50%)
for a node the validators' standings call suspect or worse: adaptive to suspicion, so a node that failed
once is audited by its own users until it is cleared or banned. Answers whose evidence would not fit a
strike report (`max_evidence_bytes`) are not shared. Sharing happens in the background from a bounded
queue (a full queue drops the sample) and never delays or fails the answer; `enabled=False` opts out.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from p2p import DolphinHost, P2PError
from pool.client import Completion
from pool.validator_peers import other_validators
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain
from protocols.ids import AUDIT_PROTOCOL
from protocols.inference import ClientExchange
from protocols.keys import peer_id_to_text
from protocols.messages import AnswerEvidence, ValidatorAnnouncement, eth_signer
from protocols.schema import encode_message

__all__ = [
    "MAX_ANNOUNCEMENT_BYTES",
    "AnswerSharer",
    "SharingSettings",
    "evidence_of",
    "verify_validator_announcement",
]

log = logging.getLogger(__name__)

MAX_ANNOUNCEMENT_BYTES = 4096


@dataclass(frozen=True)
class SharingSettings:
    """How a client shares its answers with validators (module docstring)."""

    enabled: bool = True
    rate: float = 0.05  # of completed answers
    suspect_rate: float = 0.5  # of answers by a node the validators call suspect, excluded or banned
    max_evidence_bytes: int = 60 * 1024  # a strike report carries it in one 64 KiB gossip message
    queue: int = 16  # answers waiting to be shared; more are dropped
    send_timeout: float = 20.0  # seconds to hand one answer to a validator
    flush_timeout: float = 30.0  # seconds a closing client waits for its queued answers to go out

    def __post_init__(self) -> None:
        if not (0 <= self.rate <= 1 and 0 <= self.suspect_rate <= 1):
            raise ValueError("audit rates are probabilities, between 0 and 1")


def evidence_of(exchange: ClientExchange) -> AnswerEvidence:
    """The evidence of a finished exchange's answer; `observed_*` are this client's clock. Raises
    ProtocolError when the exchange has no checked receipt."""
    if exchange.receipt is None or exchange.end_at_ms is None:
        raise ProtocolError("the node sent no receipt for its answer")
    first = exchange.first_token_at_ms if exchange.first_token_at_ms is not None else exchange.end_at_ms
    return AnswerEvidence(
        request=exchange.request_envelope,
        chunks=tuple(exchange.chunks),
        receipt=exchange.receipt.raw,
        attestation=None,
        observed_first_token_ms=max(0, first - exchange.sent_at_ms),
        observed_duration_ms=max(0, exchange.end_at_ms - exchange.sent_at_ms),
    )


def verify_validator_announcement(
    data: bytes,
    peer_id: str,
    domain: TypedDomain,
    is_validator: Callable[[bytes], bool],
    now: float | None = None,
) -> ValidatorAnnouncement:
    """The announcement `peer_id` sent about itself, if it speaks for a current validator; ProtocolError
    otherwise (module docstring: signed by the peer, bound by the wallet, unexpired, in the set)."""
    signed = envelope.open_signed(data, ValidatorAnnouncement, check_time=False)
    announcement = signed.message
    if signed.peer_id != announcement.peer_id or peer_id_to_text(announcement.peer_id) != peer_id:
        raise ProtocolError("the announcement is not by the peer that sent it")
    eth_signer(announcement, domain)
    if announcement.expiry <= (time.time() if now is None else now):
        raise ProtocolError("the announcement has expired")
    if not is_validator(announcement.validator):
        raise ProtocolError(f"0x{announcement.validator.hex()} is not a current validator")
    return announcement


class AnswerSharer:
    """Shares sampled answers with validators (module docstring). `offer` after each answer; `serve` in a
    nursery sends them. `standing(node_key, model)` is the validators' status of a node, or None."""

    def __init__(
        self,
        host: DolphinHost,
        domain: TypedDomain,
        is_validator: Callable[[bytes], bool],
        *,
        settings: SharingSettings = SharingSettings(),
        standing: Callable[[bytes, bytes], str | None] = lambda node_key, model: None,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.domain = domain
        self.is_validator = is_validator
        self.settings = settings
        self.standing = standing
        self.rng = rng or random.SystemRandom()
        self.shared = 0  # answers a validator took
        self.dropped = 0  # sampled answers that could not be shared
        self._send, self._receive = trio.open_memory_channel[bytes](settings.queue)
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()

    def rate_for(self, node_key: bytes, model: bytes) -> float:
        status = self.standing(node_key, model)
        suspect = status is not None and status != "good"
        return self.settings.suspect_rate if suspect else self.settings.rate

    def offer(self, completion: Completion, model: bytes) -> bool:
        """Draw whether to share this answer and queue it if so; whether it was queued."""
        exchange = completion.exchange
        if not self.settings.enabled or exchange is None or completion.countersigned_receipt is None:
            return False
        if self.rng.random() >= self.rate_for(completion.node_key, model):
            return False
        try:
            data = encode_message(evidence_of(exchange))
        except ProtocolError:
            return False
        if len(data) > self.settings.max_evidence_bytes:
            return False
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            self.dropped += 1
            return False
        self._pending += 1
        self._idle = trio.Event()
        return True

    async def wait_sent(self) -> None:
        """Until every queued answer was shared or given up on."""
        await self._idle.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued answers, one at a time, until cancelled."""
        task_status.started()
        async for data in self._receive:
            try:
                if await self._share(data):
                    self.shared += 1
                else:
                    self.dropped += 1
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    async def _share(self, data: bytes) -> bool:
        """Hand `data` to one current validator (tried in random order); whether one took it."""
        with trio.move_on_after(self.settings.send_timeout):
            try:
                records = await other_validators(self.host)
            except P2PError as exc:
                log.info("no validator to share an answer with: %s", exc)
                return False
            self.rng.shuffle(records)
            for record in records:
                try:
                    await self._send_to(record.peer_id, record.addrs, data)
                    return True
                except (P2PError, ProtocolError) as exc:
                    log.info("validator peer %s did not take a shared answer: %s", record.peer_id, exc)
        return False

    async def _send_to(self, peer_id: str, addrs: tuple[str, ...], data: bytes) -> None:
        await self.host.connect_any(peer_id, addrs)
        stream = await self.host.open_stream(peer_id, AUDIT_PROTOCOL)
        try:
            announcement = await stream.read_message(MAX_ANNOUNCEMENT_BYTES, timeout=10)
            verify_validator_announcement(announcement, peer_id, self.domain, self.is_validator)
            await stream.write_message(data)
        finally:
            await stream.close()
