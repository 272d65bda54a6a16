"""The light client's side of one inference: seal a prompt to a node, stream back the decrypted answer.

The prompt leaves this process only sealed to the chosen node's X25519 key, so relays and anyone else on
the path see the node's id and message sizes, nothing more. The answer is checked frame by frame (order,
integrity, truncation) and the node's receipt is countersigned only if it matches what arrived.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from p2p import DolphinHost, P2PError, Stream
from pool.errors import InferenceFailed
from protocols.errors import ProtocolError
from protocols.ids import INFERENCE_PROTOCOL
from protocols.inference import ClientExchange
from protocols.keys import Identity
from protocols.messages import (
    ChatMessage,
    CreditAuthorisation,
    InferenceRequest,
    ResponseChunk,
    ResponseEnd,
)

MAX_FRAME_BYTES = 128 * 1024


@dataclass(frozen=True)
class NodeContact:
    """What a client needs to address one node: from its pool heartbeat, or given on the command line."""

    peer_id: str
    node_key: bytes  # Ed25519 public key behind peer_id: the request is addressed to it
    encryption_key: bytes  # X25519 key the prompt is sealed to
    model: bytes  # the model id (manifest hash) the node serves


@dataclass(frozen=True)
class Completion:
    """An answer. `receipt_stored`: the node acknowledged committing our countersigned receipt. `exchange`
    is the finished exchange (the signed request, the answer's chunks, the node's receipt and when each
    arrived), for whoever must show others what the node answered (validators)."""

    text: str
    finish_reason: str
    tokens_out: int
    countersigned_receipt: bytes | None
    receipt_stored: bool = False
    exchange: ClientExchange | None = field(default=None, repr=False, compare=False)


async def complete(
    host: DolphinHost,
    node: NodeContact,
    messages: Sequence[tuple[str, str]],
    *,
    identity: Identity,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    on_text: Callable[[str], Awaitable[None] | None] | None = None,
    timeout: float = 120.0,
    ack_timeout: float = 10.0,
    credit: CreditAuthorisation | None = None,
) -> Completion:
    """Ask `node` to answer the chat `messages` ((role, content) pairs); raises InferenceFailed.

    `on_text` sees each decrypted piece as it arrives. `identity` is the client's session key: it signs
    the request and countersigns the receipt (use a fresh one per session to stay unlinkable). After
    countersigning, waits up to `ack_timeout` for the node to say it stored the receipt. `credit`, a
    wallet's authorisation of this session key, pays for the answer.
    """
    request = InferenceRequest(
        request_id=os.urandom(16),
        model=node.model,
        node_key=node.node_key,
        messages=tuple(ChatMessage(role=role, content=content) for role, content in messages),
        max_tokens=max_tokens,
        temperature_milli=round(temperature * 1000),
        top_p_milli=round(top_p * 1000),
        seed=seed,
        stop=tuple(stop),
        credit=credit,
    )
    exchange = ClientExchange(request, identity=identity, node_encryption_key=node.encryption_key)
    pieces: list[str] = []
    try:
        stream = await host.open_stream(node.peer_id, INFERENCE_PROTOCOL)
    except P2PError as exc:
        raise InferenceFailed(f"could not reach node {node.peer_id}: {exc}") from exc
    try:
        await stream.write_message(exchange.sealed_request)
        while exchange.state != "done":
            try:
                frame = await stream.read_message(MAX_FRAME_BYTES, timeout=timeout)
            except P2PError as exc:
                exchange.close()  # raises StreamError: the answer was cut short
                raise InferenceFailed(f"node {node.peer_id} stopped answering: {exc}") from exc
            message = exchange.receive(frame)
            if isinstance(message, ResponseChunk) and message.text:
                pieces.append(message.text)
                if on_text is not None and (pending := on_text(message.text)) is not None:
                    await pending
            elif isinstance(message, ResponseEnd) and message.error:
                raise InferenceFailed(f"node {node.peer_id} answered with an error: {message.error}")
        countersigned = exchange.countersigned_receipt() if exchange.receipt is not None else None
        stored = False
        if countersigned is not None:
            await stream.write_message(countersigned)
            stored = await _receipt_acknowledged(stream, exchange, ack_timeout)
    except ProtocolError as exc:
        await stream.reset()
        raise InferenceFailed(f"the answer from node {node.peer_id} failed a check: {exc}") from exc
    except P2PError as exc:
        raise InferenceFailed(f"lost node {node.peer_id} while answering: {exc}") from exc
    finally:
        await stream.close()
    end = exchange.end
    return Completion(
        text="".join(pieces),
        finish_reason=end.finish_reason,
        tokens_out=exchange.tokens_received,
        countersigned_receipt=countersigned,
        receipt_stored=stored,
        exchange=exchange,
    )


async def _receipt_acknowledged(stream: Stream, exchange: ClientExchange, timeout: float) -> bool:
    """Whether the node acknowledged storing our countersigned receipt; False if it never says so (the
    answer itself is complete either way)."""
    try:
        frame = await stream.read_message(MAX_FRAME_BYTES, timeout=timeout)
    except P2PError:
        return False
    return exchange.receive_ack(frame).stored
