"""The light client's side of one inference: seal a prompt to a node, stream back the decrypted answer.

The prompt leaves this process only sealed to the chosen node's X25519 key, so relays and anyone else on
the path see the node's id and message sizes, nothing more. The answer is checked frame by frame (order,
integrity, truncation, no more tokens than asked for) and the node's receipt is countersigned only if it
matches what arrived and counts only what the request can explain (`protocols.inference`): with the model's
tokenizer (a `TokenCounter`), exactly the client's own count of prompt and answer tokens.

`complete` is the single-node building block: the light client (`pool.light`) adds routing and failover
on top, and validators send their challenges through it so that they look like any client's traffic.
If the caller is cancelled mid-answer (an HTTP client went away), the stream is reset at once, so the
node stops generating for nobody.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from p2p import Dialer, P2PError, StreamTimeout
from pool.contact import NodeContact
from pool.errors import AnswerFailedCheck, InferenceFailed
from protocols.errors import ProtocolError
from protocols.ids import INFERENCE_PROTOCOL
from protocols.inference import ClientExchange, TokenCounter
from protocols.keys import Identity
from protocols.messages import (
    ChatMessage,
    CreditAuthorisation,
    InferenceRequest,
    Receipt,
    ResponseChunk,
    ResponseEnd,
)

__all__ = ["AnswerPiece", "Completion", "chat_messages", "complete"]

# A chunk holds at most 64 KiB of text and 4096 token ids with logprobs and alternatives; padded to a
# power of two, that stays within 256 KiB.
MAX_FRAME_BYTES = 256 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class AnswerPiece:
    """A decrypted piece of an answer as it arrived: its text, token ids, the natural-log probability of
    each id (empty when the node sent none), and per id its best alternatives as (token id, logprob)."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] = ()

    @classmethod
    def of_chunk(cls, chunk: ResponseChunk) -> AnswerPiece:
        k = chunk.top_per_token
        top = tuple(
            tuple((chunk.top_ids[j], chunk.top_logprobs_micro[j] / 1e6) for j in range(i * k, (i + 1) * k))
            for i in range(len(chunk.token_ids) if k else 0)
        )
        return cls(chunk.text, chunk.token_ids, tuple(v / 1e6 for v in chunk.logprobs_micro), top)


@dataclass(frozen=True)
class Completion:
    """One node's answer. `receipt_stored`: the node acknowledged committing our countersigned receipt.
    `receipt` is the node's signed account (None when it sent none); `ttft_s` and `duration_s` are what
    this client measured from sending the request, `connect_s` the part of it spent connecting to the
    node (0 when already connected), so `ttft_s - connect_s` is the first token's wait once connected.
    `exchange` is the finished exchange (the signed request, the answer's chunks, the node's receipt and
    when each arrived), for whoever must show others what the node answered (validators)."""

    text: str
    finish_reason: str
    tokens_out: int
    countersigned_receipt: bytes | None
    receipt_stored: bool = False
    request_id: bytes = b""
    peer_id: str = ""
    node_key: bytes = b""
    receipt: Receipt | None = None
    pieces: tuple[AnswerPiece, ...] = field(default=(), repr=False)
    ttft_s: float | None = None
    duration_s: float = 0.0
    connect_s: float = 0.0
    exchange: ClientExchange | None = field(default=None, repr=False, compare=False)

    @property
    def tokens_in(self) -> int:
        return self.receipt.tokens_in if self.receipt is not None else 0

    @property
    def token_ids(self) -> tuple[int, ...]:
        return tuple(token for piece in self.pieces for token in piece.token_ids)


OnPiece = Callable[[AnswerPiece], Awaitable[None] | None]


def chat_messages(messages: Sequence[tuple[str, str] | ChatMessage]) -> tuple[ChatMessage, ...]:
    """A chat as ChatMessages, from (role, content) pairs or ChatMessages."""
    return tuple(m if isinstance(m, ChatMessage) else ChatMessage(role=m[0], content=m[1]) for m in messages)


async def complete(
    host: Dialer,
    node: NodeContact,
    messages: Sequence[tuple[str, str] | ChatMessage],
    *,
    identity: Identity,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    top_logprobs: int = 0,
    on_text: Callable[[str], Awaitable[None] | None] | None = None,
    on_piece: OnPiece | None = None,
    timeout: float = 120.0,
    first_token_timeout: float | None = None,
    ack_timeout: float = 10.0,
    credit: CreditAuthorisation | None = None,
    prompt_token_limit: int | None = None,
    counter: TokenCounter | None = None,
    request_id: bytes | None = None,
) -> Completion:
    """Ask `node` to answer the chat `messages` ((role, content) pairs or ChatMessages).

    `on_text` / `on_piece` see each decrypted piece as it arrives. `identity` is the client's session key:
    it signs the request and countersigns the receipt (use a fresh one per session to stay unlinkable).
    `timeout` bounds the wait for each frame after the first, `first_token_timeout` (default `timeout`)
    the wait for the first (the node sends nothing until its first token). After countersigning, waits up
    to `ack_timeout` for the node to say it stored the receipt. `credit`, a wallet's authorisation of
    this session key, pays for the answer. `counter` (the model's tokenizer) makes the receipt's counts
    exact; without it, `prompt_token_limit` caps the `tokens_in` a receipt may claim (default: the prompt's
    byte bound). Raises InferenceFailed, or AnswerFailedCheck when what the node
    sent broke a rule.
    """
    request = InferenceRequest(
        request_id=request_id or os.urandom(16),
        model=node.model,
        node_key=node.node_key,
        messages=chat_messages(messages),
        max_tokens=max_tokens,
        temperature_milli=round(temperature * 1000),
        top_p_milli=round(top_p * 1000),
        seed=seed,
        stop=tuple(stop),
        top_logprobs=top_logprobs,
        credit=credit,
    )
    exchange = ClientExchange(
        request,
        identity=identity,
        node_encryption_key=node.encryption_key,
        prompt_token_limit=prompt_token_limit,
        counter=counter,
    )
    started = time.monotonic()
    first_token_at: float | None = None
    pieces: list[AnswerPiece] = []
    try:
        await host.ensure_connected(node.peer_id)
        connected_at = time.monotonic()
        # Optimistic: the request leaves with the protocol selection, so the first token is one round
        # trip (plus the engine's time) away instead of three.
        stream = await host.open_stream(node.peer_id, INFERENCE_PROTOCOL, optimistic=True)
    except P2PError as exc:
        raise InferenceFailed(f"could not reach node {node.peer_id}: {exc}", reason="unreachable") from exc
    finished = False
    try:
        await stream.write_message(exchange.sealed_request)
        while exchange.state != "done":
            wait = timeout if exchange.state == "streaming" else (first_token_timeout or timeout)
            try:
                frame = await stream.read_message(MAX_FRAME_BYTES, timeout=wait)
            except StreamTimeout as exc:
                raise InferenceFailed(
                    f"node {node.peer_id} stalled: nothing for {wait:g} s", reason="stalled"
                ) from exc
            except P2PError as exc:
                # The transport ended mid-answer (a reset, a dropped relay circuit, the node gone): a lost
                # answer, not one that failed a check, so the exchange's own "truncated" error stays here.
                with contextlib.suppress(ProtocolError):
                    exchange.close()
                raise InferenceFailed(f"node {node.peer_id} stopped answering: {exc}") from exc
            message = exchange.receive(frame)
            if isinstance(message, ResponseChunk) and (message.text or message.token_ids):
                piece = AnswerPiece.of_chunk(message)
                pieces.append(piece)
                if first_token_at is None and piece.token_ids:
                    first_token_at = time.monotonic()
                await _notify(on_piece, piece)
                if message.text:
                    await _notify(on_text, message.text)
            elif isinstance(message, ResponseEnd) and message.error:
                raise InferenceFailed(
                    f"node {node.peer_id} answered with an error: {message.error}",
                    reason="refused" if not pieces else "lost",
                    hard=bool(pieces),  # refusing before answering (busy, draining) is not a fault
                )
        countersigned = exchange.countersigned_receipt() if exchange.receipt is not None else None
        stored = False
        if countersigned is not None:
            await stream.write_message(countersigned)
            stored = await _receipt_acknowledged(stream, exchange, ack_timeout)
        finished = True
    except ProtocolError as exc:
        raise AnswerFailedCheck(f"the answer from node {node.peer_id} failed a check: {exc}") from exc
    except P2PError as exc:
        raise InferenceFailed(f"lost node {node.peer_id} while answering: {exc}") from exc
    finally:
        # Shielded: a caller cancelled mid-answer must still tell the node, which then stops generating.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await (stream.close() if finished else stream.reset())
    end = exchange.end
    assert end is not None  # the loop above ran until the end message
    return Completion(
        text="".join(piece.text for piece in pieces),
        finish_reason=end.finish_reason,
        tokens_out=exchange.tokens_received,
        countersigned_receipt=countersigned,
        receipt_stored=stored,
        request_id=request.request_id,
        peer_id=node.peer_id,
        node_key=node.node_key,
        receipt=exchange.receipt.message if exchange.receipt is not None else None,
        pieces=tuple(pieces),
        ttft_s=first_token_at - started if first_token_at is not None else None,
        duration_s=time.monotonic() - started,
        connect_s=connected_at - started,
        exchange=exchange,
    )


async def _notify(callback: Callable[[_T], Awaitable[None] | None] | None, value: _T) -> None:
    if callback is not None and (pending := callback(value)) is not None:
        await pending


async def _receipt_acknowledged(stream, exchange: ClientExchange, timeout: float) -> bool:
    """Whether the node acknowledged storing our countersigned receipt; False if it never says so (the
    answer itself is complete either way)."""
    try:
        frame = await stream.read_message(MAX_FRAME_BYTES, timeout=timeout)
    except P2PError:
        return False
    return exchange.receive_ack(frame).stored
