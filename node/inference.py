"""The node's inference service: sealed requests in, an encrypted answer stream and a signed receipt out.

One request per stream on INFERENCE_PROTOCOL (protocols/ids.py), frames length-prefixed:

    client ── sealed request ──▶ node      (InferenceRequest signed by the client, sealed to our X25519 key)
    client ◀── header, chunks…, end ──      (secretstream; the end carries our signed Receipt)
    client ── countersigned receipt ──▶     (the unit of work that earns base rewards)
    client ◀── acknowledgement ──           (sent only once the receipt is committed to the ledger)

Many requests are answered at once: the service hands each to the engine, which batches them; nothing
here serialises requests. Tokens go out in small batches (`protocols.inference.TokenBatcher`): the first as
soon as it exists (time to first token), then whatever the engine produced in each `flush_interval`, so the
stream shows fewer, coarser frames than one per token. Every token travels with its id and its logprob (in
millionths) whatever the request asked, and with the alternatives it asked for (`top_logprobs`): validators
check answers by them, and a node that sent them only when asked would tell its checkers from its clients.

Everything from the network is untrusted. A request that cannot be opened is dropped with the stream
reset; one that opens but fails a check (signature, expiry, replay, addressee, credit) or that the node
will not serve now (draining, the owner is busy, overloaded, wrong model, unpaid) gets an error end that
only its sender can read, saying why. Each refusal is logged with the peer and a reason code and counted
in the metrics; never with the request's content — error texts from decoding can quote field values, so
they go only into the encrypted refusal. Prompts and answers are never logged or stored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio

from node.credits import PaymentPolicy, most_a_request_costs
from node.engines.base import (
    Engine,
    EngineError,
    EngineRequestError,
    GenerationRequest,
    Piece,
    Priority,
    chat_turns,
)
from node.ledger import Ledger, LedgerError
from node.metrics import NodeMetrics
from node.unacknowledged import UnacknowledgedAnswers
from p2p import MessageStream, MessageTooLarge, P2PError
from protocols import envelope
from protocols.errors import (
    DecryptError,
    ExpiredError,
    ProtocolError,
    ReplayError,
    SchemaError,
    SignatureError,
)
from protocols.inference import NodeExchange, TokenBatcher
from protocols.keys import EncryptionKeyPair, Identity
from runtime.lifecycle import InFlight

__all__ = ["InferenceService", "ServiceLimits", "ServiceStatistics", "logprob_micro"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask of this node, and how answers are paced."""

    max_request_bytes: int = 512 * 1024
    max_new_tokens: int = 1024
    max_receipt_bytes: int = 16 * 1024
    receipt_timeout: float = 10.0
    max_waiting: int = 64  # refuse network requests while this many wait for an engine slot
    flush_interval: float = 0.025  # seconds between answer frames after the first token
    # No free answers (`node.unacknowledged`): answers a payer may hold without countersigning, per window.
    unacknowledged_budget: int = 3
    unacknowledged_window_s: float = 3600.0


@dataclass
class ServiceStatistics:
    served: int = 0
    refused: int = 0
    abandoned: int = 0
    countersigned: int = 0
    stored: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_LOWEST_LOGPROB_MICRO = -(10**12)  # stands for -inf (a token the model gave no probability at all)


def logprob_micro(logprob: float) -> int:
    """A natural-log probability in millionths, as chunks carry it."""
    if not math.isfinite(logprob):
        return _LOWEST_LOGPROB_MICRO
    return max(round(logprob * 1_000_000), _LOWEST_LOGPROB_MICRO)


def _reason_code(exc: ProtocolError) -> str:
    """A metrics/log reason for a request that failed `NodeExchange.accept` (see REFUSAL_REASONS)."""
    text = str(exc)
    if "CreditAuthorisation" in text or "credit authorisation" in text:
        return "bad_credit"
    if isinstance(exc, DecryptError):
        return "undecryptable"
    if isinstance(exc, SignatureError):
        return "bad_signature"
    if isinstance(exc, ExpiredError):
        return "expired"
    if isinstance(exc, ReplayError):
        return "replayed"
    if isinstance(exc, SchemaError) and "another node" in text:
        return "misaddressed"
    return "malformed"


class _Refused(Exception):
    """A request this node will not serve: `code` for logs and metrics, `message` for its sender only."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InferenceService:
    """Serves one engine's model (and those of `more_engines`, model id -> engine) to the network: each
    request goes to the engine of the model it names. Register `handle` for INFERENCE_PROTOCOL.

    `encryption_keys()` returns the X25519 key pairs requests may be sealed to now (current first, then
    the previous one during its grace period). `ledger` stores countersigned receipts and, through the
    replay cache, accepted nonces; without one, receipts are acknowledged as not stored.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        encryption_keys: Callable[[], list[EncryptionKeyPair]],
        engine: Engine,
        model_id: bytes,
        more_engines: Mapping[bytes, Engine] | None = None,
        limits: ServiceLimits = ServiceLimits(),
        ledger: Ledger | None = None,
        replay: envelope.ReplayCache | None = None,
        payments: PaymentPolicy | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.encryption_keys = encryption_keys
        self.engine = engine
        self.model_id = model_id
        self.engines: dict[bytes, Engine] = {**(more_engines or {}), model_id: engine}
        self.limits = limits
        self.ledger = ledger
        self.replay = replay if replay is not None else envelope.ReplayCache()
        self.payments = payments or PaymentPolicy()
        self.metrics = metrics or NodeMetrics(engine.load)
        self._statistics = ServiceStatistics()
        self.unacknowledged = UnacknowledgedAnswers(
            budget=limits.unacknowledged_budget, window_s=limits.unacknowledged_window_s
        )
        self._paused: dict[str, str] = {}  # reason code -> message for the client
        self._in_flight = InFlight()

    # ---- state the daemon steers ----
    def statistics(self) -> ServiceStatistics:
        return self._statistics

    def pause(self, code: str, message: str) -> None:
        """Refuse new network requests with `message` until `resume(code)` (draining, owner busy)."""
        self._paused[code] = message
        self.metrics.accepting.set(0)

    def resume(self, code: str) -> None:
        self._paused.pop(code, None)
        if not self._paused:
            self.metrics.accepting.set(1)

    @property
    def accepting(self) -> bool:
        return not self._paused

    @property
    def active(self) -> int:
        """Network requests being handled now (from reading the request to the acknowledgement)."""
        return self._in_flight.count

    async def wait_idle(self) -> None:
        """Until no network request is in progress."""
        await self._in_flight.wait_idle()

    def load(self) -> tuple[int, int]:
        """(answers being generated, requests waiting for the engine), for heartbeats."""
        return self.load_of(self.model_id)

    def load_of(self, model: bytes) -> tuple[int, int]:
        """`load()` of the engine serving `model` (one of `engines`), for that model's heartbeats."""
        load = self.engines[model].load()
        return load.running, load.waiting

    # ---- one stream ----
    async def handle(self, stream: MessageStream) -> None:
        """Serve one request on `stream`; never raises for anything the peer sends or does."""
        with self._in_flight.tracking():
            try:
                await self._serve(stream)
            except MessageTooLarge:
                self._count_refusal(stream, "oversized", "request over the size limit")
                await stream.reset()
            except P2PError as exc:  # the peer went away or stalled mid-exchange
                self._statistics.abandoned += 1
                self.metrics.abandoned.inc()
                peer, reason = stream.peer_id, type(exc).__name__
                log.info("inference stream with %s ended early: %s: %s", peer, reason, exc)
            finally:
                await stream.close()

    def _count_refusal(self, stream: MessageStream, code: str, detail: str) -> None:
        self._statistics.refused += 1
        self._statistics.refusals[code] = self._statistics.refusals.get(code, 0) + 1
        self.metrics.refused(code)
        log.info("refused a request from %s: %s (%s)", stream.peer_id, code, detail)

    async def _refuse(
        self, stream: MessageStream, sealed: bytes, code: str, message: str, detail: str
    ) -> None:
        """Tell the sender why (if the seal opens with one of our keys), else reset the stream."""
        self._count_refusal(stream, code, detail)
        for keys in self.encryption_keys():
            with contextlib.suppress(ProtocolError):
                frames = NodeExchange.refusal(sealed, encryption_keys=keys, reason=message)
                for frame in frames:
                    await stream.write_message(frame)
                return
        await stream.reset()

    def _accept(self, sealed: bytes) -> NodeExchange:
        error: ProtocolError | None = None
        for keys in self.encryption_keys():
            try:
                return NodeExchange.accept(
                    sealed,
                    identity=self.identity,
                    encryption_keys=keys,
                    replay=self.replay,
                    credit_domain=self.payments.credit_domain,
                )
            except DecryptError as exc:  # sealed to another of our keys (or to none): try the next
                error = exc
        assert error is not None
        raise error

    async def _serve(self, stream: MessageStream) -> None:
        sealed = await stream.read_message(self.limits.max_request_bytes)
        if self._paused:
            code, message = next(iter(self._paused.items()))
            await self._refuse(stream, sealed, code, message, "not taking requests now")
            return
        try:
            exchange = self._accept(sealed)
        except ProtocolError as exc:
            code = _reason_code(exc)
            # The detailed text can quote decoded values: it goes to the sender only, encrypted.
            await self._refuse(stream, sealed, code, f"refused: {exc}", type(exc).__name__)
            return
        try:
            engine = self._engine_for(exchange.request.model)
            generation = await self._admit(exchange, engine)
            payer = _payer(exchange, stream)
            if not self.unacknowledged.allows(payer):
                raise _Refused(
                    "unacknowledged",
                    f"{self.unacknowledged.owed(payer)} earlier answers to this payer were never "
                    "countersigned: countersign receipts to be served again",
                )
        except _Refused as refused:
            await self._refuse(stream, sealed, refused.code, refused.message, refused.message)
            return
        await self._answer(stream, sealed, exchange, generation, engine, payer)

    def _engine_for(self, model: bytes) -> Engine:
        engine = self.engines.get(model)
        if engine is None:
            raise _Refused("wrong_model", "this node does not serve the requested model")
        return engine

    async def _admit(self, exchange: NodeExchange, engine: Engine) -> GenerationRequest:
        """The checks after the envelope's and the model's: payment, load. Raises _Refused."""
        request = exchange.request
        if engine.load().waiting >= self.limits.max_waiting:
            raise _Refused("overloaded", "this node has too many requests waiting; try another")
        if exchange.credit_client is not None:
            covered = None
            if self.payments.book is not None and request.credit is not None:  # (it names credit_client)
                amount = request.credit.max_credits
                price = await self.payments.book.price(request.model)
                if price is not None:
                    amount = min(amount, most_a_request_costs(price, request))
                covered = await self.payments.book.covers(exchange.credit_client, amount)
            if not covered:
                exchange.credit_client = None  # served unpaid, if at all: the receipt names no payer
        if exchange.credit_client is None and not self.payments.serve_unpaid:
            raise _Refused(
                "unpaid", "this node serves paid requests only: send a covered credit authorisation"
            )
        try:
            return GenerationRequest(
                messages=chat_turns((m.role, m.content) for m in request.messages),
                max_tokens=min(request.max_tokens, self.limits.max_new_tokens),
                temperature=request.temperature_milli / 1000,
                top_p=request.top_p_milli / 1000,
                seed=request.seed,
                stop=request.stop,
                top_logprobs=request.top_logprobs,
                priority=Priority.NETWORK,
            )
        except EngineRequestError as exc:
            raise _Refused("bad_request", str(exc)) from exc

    async def _answer(
        self,
        stream: MessageStream,
        sealed: bytes,
        exchange: NodeExchange,
        generation: GenerationRequest,
        engine: Engine,
        payer: bytes,
    ) -> None:
        started_ms = _now_ms()
        started = time.monotonic()
        sender = _PacedSender(stream, exchange, self.limits, self.metrics)
        failure: EngineError | None = None
        gone: P2PError | None = None
        last: Piece | None = None
        async with trio.open_nursery() as nursery:
            pieces_in, pieces_out = trio.open_memory_channel[Piece](math.inf)

            async def produce() -> None:
                nonlocal failure
                async with pieces_in, contextlib.aclosing(engine.generate(generation)) as pieces:
                    try:
                        async for piece in pieces:
                            pieces_in.send_nowait(piece)
                    except EngineError as exc:
                        failure = exc
                    except trio.BrokenResourceError:
                        pass  # the sender stopped reading (the client left): this task is being cancelled

            nursery.start_soon(produce)
            try:
                last = await sender.send_all(pieces_out)
            except P2PError as exc:
                gone = exc
            nursery.cancel_scope.cancel()  # the client left: stop generating for nobody
        if gone is not None:
            raise gone
        if failure is not None and not sender.started:  # nothing sent yet: a plain refusal
            code = "bad_request" if isinstance(failure, EngineRequestError) else "engine_error"
            await self._refuse(stream, sealed, code, str(failure), str(failure))
            return
        if failure is not None:
            self.metrics.refused("engine_error")
            log.warning("the engine failed an answer for %s: %s", stream.peer_id, failure)
        await sender.start()
        finish = last.finish_reason if last is not None and last.finish_reason else "error"
        tokens_in = last.prompt_tokens if last is not None else 0
        end = exchange.end(
            finish,
            tokens_in=tokens_in,
            started_at_ms=started_ms,
            first_token_ms=sender.first_token_ms,
            duration_ms=_now_ms() - started_ms,
            error="the engine failed while answering" if failure is not None else None,
        )
        # From before the end goes out: a client that reads it (or only the pieces) and leaves has taken
        # the answer, and the ticket lapses unless a countersignature comes back.
        ticket = self.unacknowledged.answered(payer)
        countersigned = False
        try:
            await stream.write_message(end)
            self._statistics.served += 1
            ttft = sender.first_token_at - started if sender.first_token_at is not None else None
            self.metrics.served("network", tokens_in=tokens_in, tokens_out=exchange.tokens_out, ttft_s=ttft)
            countersigned = await self._take_receipt(stream, exchange)
        finally:
            if not countersigned:
                self.unacknowledged.lapsed(ticket)

    async def _take_receipt(self, stream: MessageStream, exchange: NodeExchange) -> bool:
        """Read the countersigned receipt and acknowledge it; whether it was a valid countersignature
        (stored or not). Raises P2PError when the client never sent one."""
        data = await stream.read_message(self.limits.max_receipt_bytes, timeout=self.limits.receipt_timeout)
        try:
            verified = exchange.accept_countersigned(data)
        except ProtocolError as exc:
            self._count_refusal(stream, "malformed", f"bad countersigned receipt: {type(exc).__name__}")
            await stream.write_message(exchange.acknowledge(stored=False, error=f"receipt refused: {exc}"))
            return False
        self._statistics.countersigned += 1
        if self.ledger is None:
            await stream.write_message(exchange.acknowledge(stored=False, error="this node keeps no ledger"))
            return True
        try:
            await self.ledger.store_receipt(verified)
        except LedgerError as exc:
            log.error("could not store a receipt: %s", exc)
            await stream.write_message(
                exchange.acknowledge(stored=False, error="the node could not store it")
            )
            return True
        self._statistics.stored += 1
        self.metrics.receipts.inc()
        await stream.write_message(exchange.acknowledge(stored=True))
        return True


def _payer(exchange: NodeExchange, stream: MessageStream) -> bytes:
    """Who an answer is owed by (`node.unacknowledged`): the covering wallet, else the sending peer."""
    if exchange.credit_client is not None:
        return b"wallet:" + exchange.credit_client
    return b"peer:" + str(stream.peer_id).encode()


class _PacedSender:
    """Sends an answer's pieces as frames through `TokenBatcher`: the first at once, then what the engine
    produced in each flush interval, every token with its logprob (validators compare them)."""

    def __init__(
        self, stream: MessageStream, exchange: NodeExchange, limits: ServiceLimits, metrics: NodeMetrics
    ):
        self.stream = stream
        self.exchange = exchange
        self.metrics = metrics
        self.batcher = TokenBatcher(exchange, interval_ms=round(limits.flush_interval * 1000))
        self.first_token_ms = 0
        self.first_token_at: float | None = None
        self.started = False
        self._started_ms = _now_ms()

    async def start(self) -> None:
        """Send the stream header, once: only when there is something to say, so that a request the
        engine refuses outright still gets a plain refusal."""
        if not self.started:
            self.started = True
            await self.stream.write_message(self.exchange.header())

    async def _send(self, frame: bytes | None) -> None:
        if frame is None:
            return
        before = self.exchange.tokens_out - self.batcher.held_tokens
        await self.start()
        await self.stream.write_message(frame)
        self.metrics.output_tokens(self.exchange.tokens_out - before)

    async def send_all(self, pieces: trio.MemoryReceiveChannel[Piece]) -> Piece | None:
        """Send until the last piece; returns it (None if the engine ended without one)."""
        last: Piece | None = None
        async with pieces:
            while True:
                due = self.batcher.deadline_ms
                wait = math.inf if due is None else max(0, due - envelope.clock_ms()) / 1000
                piece = None
                with trio.move_on_after(wait):
                    try:
                        piece = await pieces.receive()
                    except trio.EndOfChannel:
                        break
                if piece is None:  # held tokens are due
                    await self._send(self.batcher.poll())
                    continue
                last = piece
                if piece.token_ids and self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                    self.first_token_ms = _now_ms() - self._started_ms
                logprobs = tuple(logprob_micro(logprob) for logprob in piece.logprobs)
                top = tuple(
                    tuple((token, logprob_micro(lp)) for token, lp in options)
                    for options in piece.top_logprobs
                )
                await self._send(
                    self.batcher.add(piece.text, piece.token_ids, logprobs, top_logprobs_micro=top)
                )
                if piece.finish_reason is not None:
                    break
        await self._send(self.batcher.flush())
        return last
