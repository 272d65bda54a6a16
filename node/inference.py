"""The node's inference service: sealed requests in, an encrypted answer stream and a signed receipt out.

One request per stream on INFERENCE_PROTOCOL (protocols/ids.py), frames length-prefixed:

    client ── sealed request ──▶ node      (InferenceRequest signed by the client, sealed to our X25519 key)
    client ◀── header, chunks…, end ──      (secretstream; the end carries our signed Receipt)
    client ── countersigned receipt ──▶     (the unit of work that earns base rewards)

Everything from the network is untrusted: a request that fails to open, verify, or is replayed or addressed
to another node is dropped with the stream reset and a log line naming the peer and the reason, never its
content. Prompts and answers are never logged or stored; only receipts (hashes and counts) are kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from node.models.loading import LoadedModel, Sampling, encode_chat, stream_completion
from p2p import P2PError, Stream
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.inference import NodeExchange, VerifiedReceipt
from protocols.keys import EncryptionKeyPair, Identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask of this node."""

    max_request_bytes: int = 512 * 1024
    max_new_tokens: int = 1024
    max_receipt_bytes: int = 16 * 1024
    receipt_timeout: float = 10.0
    concurrent_generations: int = 1


@dataclass
class ServiceStatistics:
    served: int = 0
    refused: int = 0
    abandoned: int = 0
    countersigned: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class InferenceService:
    """Serves one loaded model. Register `handle` as the stream handler for INFERENCE_PROTOCOL."""

    def __init__(
        self,
        *,
        identity: Identity,
        encryption_keys: EncryptionKeyPair,
        model: LoadedModel,
        limits: ServiceLimits = ServiceLimits(),
    ) -> None:
        self.identity = identity
        self.encryption_keys = encryption_keys
        self.model = model
        self.model_id = model.manifest.model_id()
        self.limits = limits
        self.replay = envelope.ReplayCache()
        self.receipts: list[VerifiedReceipt] = []
        self._generations = trio.CapacityLimiter(limits.concurrent_generations)
        self._statistics = ServiceStatistics()

    def statistics(self) -> ServiceStatistics:
        return self._statistics

    def load(self) -> tuple[int, int]:
        """(answers being generated, requests waiting for a generation slot), for heartbeats."""
        stats = self._generations.statistics()
        return stats.borrowed_tokens, stats.tasks_waiting

    def _refuse(self, stream: Stream, reason: str) -> None:
        self._statistics.refused += 1
        self._statistics.refusals[reason] = self._statistics.refusals.get(reason, 0) + 1
        log.info("refused a request from %s: %s", stream.peer_id, reason)

    async def handle(self, stream: Stream) -> None:
        """Serve one request on `stream`; never raises for anything the peer sends or does."""
        try:
            await self._serve(stream)
        except P2PError as exc:  # the peer went away or stalled mid-exchange
            self._statistics.abandoned += 1
            log.info("inference stream with %s ended early: %s", stream.peer_id, exc)
        finally:
            await stream.close()

    async def _serve(self, stream: Stream) -> None:
        sealed = await stream.read_message(self.limits.max_request_bytes)
        try:
            exchange = NodeExchange.accept(
                sealed, identity=self.identity, encryption_keys=self.encryption_keys, replay=self.replay
            )
        except ProtocolError as exc:
            self._refuse(stream, type(exc).__name__ + ": " + str(exc))
            await stream.reset()
            return
        await stream.write_message(exchange.header())
        started_ms = _now_ms()
        request = exchange.request
        if request.model != self.model_id:
            self._refuse(stream, f"model {request.model.hex()[:16]}… is not served here")
            end = exchange.end(
                "error",
                tokens_in=0,
                started_at_ms=started_ms,
                first_token_ms=0,
                duration_ms=0,
                error="this node does not serve the requested model",
            )
            await stream.write_message(end)
            return
        await self._answer(stream, exchange, started_ms)

    async def _answer(self, stream: Stream, exchange: NodeExchange, started_ms: int) -> None:
        request = exchange.request
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        max_new_tokens = min(request.max_tokens, self.limits.max_new_tokens)
        sampling = Sampling(
            max_new_tokens=max_new_tokens,
            temperature=request.temperature_milli / 1000,
            top_p=request.top_p_milli / 1000,
            seed=request.seed,
        )
        tokens_in = int(encode_chat(self.model, messages)["input_ids"].shape[1])
        first_token_ms = 0
        async with self._generations:
            pieces = stream_completion(self.model, messages, sampling)
            try:
                while (piece := await trio.to_thread.run_sync(next, pieces, None)) is not None:
                    text, ids = piece
                    if not first_token_ms:
                        first_token_ms = _now_ms() - started_ms
                    await stream.write_message(exchange.chunk(text, tuple(ids)))
            finally:
                # Stops the generation thread at its next token if the client went away mid-answer.
                await trio.to_thread.run_sync(pieces.close)
        finish = "length" if exchange.tokens_out >= max_new_tokens else "stop"
        end = exchange.end(
            finish,
            tokens_in=tokens_in,
            started_at_ms=started_ms,
            first_token_ms=first_token_ms,
            duration_ms=_now_ms() - started_ms,
        )
        await stream.write_message(end)
        self._statistics.served += 1
        countersigned = await stream.read_message(
            self.limits.max_receipt_bytes, timeout=self.limits.receipt_timeout
        )
        try:
            self.receipts.append(exchange.accept_countersigned(countersigned))
        except ProtocolError as exc:
            self._refuse(stream, f"bad countersigned receipt: {exc}")
            return
        self._statistics.countersigned += 1
