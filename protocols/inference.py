"""One inference exchange, both ends, as sans-IO state machines; and receipts, which outlive the exchange.

    client                                             node
    ClientExchange(...).sealed_request  ── sealed ──▶  NodeExchange.accept(sealed, ...)
    receive(frame) → None               ◀─ header ──   .header()
    receive(frame) → ResponseChunk      ◀─ chunk ───   .chunk(text, token_ids, logprobs)   × n
                                                       (or TokenBatcher(node).add(...) per token)
    receive(frame) → ResponseEnd        ◀─ end ─────   .end(...): signed Receipt inside, FINAL
    countersigned_receipt()             ── receipt ─▶  .accept_countersigned(data) → VerifiedReceipt
    receive_ack(frame) → ReceiptAck     ◀─ ack ─────   .acknowledge(stored, error): after a durable commit

Frames are whole byte strings: carry each in one `framing.encode_frame` on the stream. The answer stream
(header to end) is encrypted, and every frame after the header is a power of two bytes (see `e2e`), whatever
the tokens in it; the countersigned receipt and its acknowledgement are not encrypted (they reveal nothing
the stream's shape does not).

Client rules: states await_header → streaming → done → acknowledged, or failed after any error (then every
call raises StreamError). Chunks must come with seq 0, 1, 2…, never more token ids in all than the request's
`max_tokens`, nor more alternatives per token than its `top_logprobs`; the end message comes last, tagged
final, with the next seq. The receipt in it must be signed by the node the request was addressed to and name
this request's hash, size, id, model, max_tokens, client key and finish reason, and exactly the number of
token ids received. Its counts must be ones the request can explain, because settlement pays for them.
With the model's tokenizer and chat template (a `TokenCounter`), the bill must be exact: `tokens_in` equal
to the client's own count of the prompt, and the token ids received must be the ones that make the text
received (`TokenCounter.output_matches`), so `tokens_out` counts no padding. Without one, `tokens_in` at
most the prompt's bound (`prompt_token_bound`: its UTF-8 bytes plus a chat-template allowance, since a token
of a byte-level or byte-fallback tokenizer covers at least one byte), a bound a node can inflate a bill to.
Its paying wallet must be the one whose credit authorisation the request carried, or none: a node may serve
a request unpaid (its loss), but a receipt that bills a wallet the client did not offer, or bills without an
offer, is refused; the credit authorisation it names as paying, if any, must be the request's. And its times
must fit what the client saw, within TIMING_TOLERANCE_MS of clock skew: the node started no earlier than the
request was signed, had its first token no later than the client received it, finished no later than the end
arrived, and its first token came no later than its end.
Otherwise the client refuses to countersign (SchemaError). These checks are one-sided because a client only
knows when it *read* a frame, which may be well after it arrived: a node can still claim it was faster than it
was, which validators measure with their own requests. `close()` when the transport ends early reports
truncation.
The acknowledgement must name the sha256 of the countersigned receipt sent. The receipt's `output_hash` must
be `output_hash` of the chunk messages received (their decrypted encodings, in order): the node signs what
it sent, so a validator can show others the answer a node gave it (`AnswerEvidence`).

Node rules: states streaming → done → countersigned → acknowledged; `header()` is sent before any chunk;
nothing after `end()` but the acknowledgement, which says `stored` only once the receipt was committed (a
receipt that failed its checks is acknowledged as not stored, with the reason). The request must be signed,
unexpired, unreplayed and addressed to this node's key; a credit authorisation in it must be unexpired by
the node's clock (not the request's own issue time, which the client chooses). The request's nonce is
remembered only once all of that passed, so refused requests take no room in the replay cache.

Batching (`TokenBatcher`): the first piece of an answer goes out at once; later ones are held and sent
together every `interval_ms` (50 ms by default), so an observer sees one chunk per interval rather than one
per token, at no cost to the time to first token.

The receipt countersignature is Ed25519 by the request's signer (the client's session key) over
uvarint(len(domain)) ‖ domain ‖ uvarint(32) ‖ sha256(receipt envelope), domain
"dolphin-network:receipt-countersignature:v1".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from protocols import codec, e2e, envelope, keys
from protocols.errors import ProtocolError, SchemaError, StreamError
from protocols.eth import TypedDomain
from protocols.framing import encode_uvarint
from protocols.messages import (
    MAX_CHUNK_TEXT_BYTES,
    MAX_TOKENS_PER_CHUNK,
    MAX_TOP_LOGPROBS_PER_CHUNK,
    ChatMessage,
    CountersignedReceipt,
    InferenceRequest,
    Receipt,
    ReceiptAck,
    ResponseChunk,
    ResponseEnd,
    eth_signer,
)
from protocols.schema import decode_message, encode_message

__all__ = [
    "MESSAGE_TEMPLATE_TOKENS",
    "PROMPT_TEMPLATE_TOKENS",
    "ClientExchange",
    "NodeExchange",
    "TokenBatcher",
    "TokenCounter",
    "VerifiedReceipt",
    "countersign_receipt",
    "output_hash",
    "prompt_token_bound",
    "verify_countersigned_receipt",
]

_COUNTERSIGN_DOMAIN = b"dolphin-network:receipt-countersignature:v1"
_OUTPUT_DOMAIN = b"dolphin-network:answer-output:v1"
REQUEST_TTL_MS = 60_000
TIMING_TOLERANCE_MS = 5_000
DEFAULT_BATCH_MS = 50
# What a chat template may add around the messages, in tokens: the whole frame (a default system prompt,
# the generation prompt) and each message's role markers and separators. Measured: SmolLM2's template adds
# its default system prompt and 5 tokens a message; these leave room for longer templates.
PROMPT_TEMPLATE_TOKENS = 256
MESSAGE_TEMPLATE_TOKENS = 16


class TokenCounter(Protocol):
    """A model's own token counts, for exact bills (implemented over the model's tokenizer and chat
    template by `node.models.tokens.TokenizerCounter`)."""

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The prompt tokens the chat template makes of `messages` (an honest node's `tokens_in`)."""
        ...

    def output_matches(self, token_ids: Sequence[int], text: str, stop: Sequence[str]) -> bool:
        """Whether `token_ids` are the answer `text` (with at most a trailing end-of-sequence token, and
        past the text only what completed a `stop` string), so `tokens_out` counts nothing more."""
        ...


def prompt_token_bound(messages: Sequence[ChatMessage]) -> int:
    """The most prompt tokens an honest node can count for `messages` (module docstring, client rules)."""
    return PROMPT_TEMPLATE_TOKENS + sum(
        len(m.content.encode()) + len(m.role) + MESSAGE_TEMPLATE_TOKENS for m in messages
    )


def _countersign_input(receipt_envelope: bytes) -> bytes:
    digest = hashlib.sha256(receipt_envelope).digest()
    return encode_uvarint(len(_COUNTERSIGN_DOMAIN)) + _COUNTERSIGN_DOMAIN + encode_uvarint(32) + digest


class _OutputHasher:
    """The running `output_hash` of an answer: sha256 over a domain tag, then each chunk message's encoding
    prefixed by its uvarint length (so chunk boundaries count, and no two chunk lists hash alike)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(encode_uvarint(len(_OUTPUT_DOMAIN)) + _OUTPUT_DOMAIN)

    def add(self, encoded_chunk: bytes) -> None:
        self._sha.update(encode_uvarint(len(encoded_chunk)) + encoded_chunk)

    def digest(self) -> bytes:
        return self._sha.digest()


def output_hash(encoded_chunks: Iterable[bytes]) -> bytes:
    """What a receipt's `output_hash` commits to: the answer's ResponseChunk encodings, in order."""
    hasher = _OutputHasher()
    for chunk in encoded_chunks:
        hasher.add(chunk)
    return hasher.digest()


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt whose node and client signatures both verified. `digest` identifies it for de-duplication."""

    receipt: Receipt
    node_key: bytes
    client_key: bytes
    receipt_envelope: bytes
    countersigned: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.receipt_envelope).digest()


def countersign_receipt(receipt_envelope: bytes, identity: keys.Identity) -> bytes:
    """The encoded CountersignedReceipt for a node's receipt envelope, signed by `identity` (the client)."""
    signature = identity.sign(_countersign_input(receipt_envelope))
    return encode_message(CountersignedReceipt(receipt=receipt_envelope, client_signature=signature))


def verify_countersigned_receipt(
    data: bytes, *, limits: codec.Limits = codec.DEFAULT_LIMITS
) -> VerifiedReceipt:
    """Check a countersigned receipt as any validator would: the node's envelope signature, and the client's
    countersignature by the key the receipt names. Time is not checked: receipts are judged after the fact.
    """
    outer = decode_message(data, CountersignedReceipt, limits=limits)
    signed = envelope.open_signed(outer.receipt, Receipt, check_time=False, limits=limits)
    receipt = signed.message
    keys.verify_ed25519(receipt.client_key, _countersign_input(outer.receipt), outer.client_signature)
    return VerifiedReceipt(receipt, signed.signer, receipt.client_key, outer.receipt, bytes(data))


class ClientExchange:
    """The client's end of one inference (see the module docstring for its rules)."""

    def __init__(
        self,
        request: InferenceRequest,
        *,
        identity: keys.Identity,
        node_encryption_key: bytes,
        now_ms: int | None = None,
        ttl_ms: int = REQUEST_TTL_MS,
        timing_tolerance_ms: int = TIMING_TOLERANCE_MS,
        prompt_token_limit: int | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        """`counter`: the model's own counts, which the receipt must match exactly. Without one,
        `prompt_token_limit` is the most `tokens_in` a receipt may claim (default `prompt_token_bound`)."""
        if not isinstance(request, InferenceRequest):
            raise SchemaError("ClientExchange needs an InferenceRequest")
        self.request = request
        self.prompt_token_limit = (
            prompt_token_bound(request.messages) if prompt_token_limit is None else prompt_token_limit
        )
        self.counter = counter
        self.identity = identity
        self.sent_at_ms = envelope.clock_ms() if now_ms is None else now_ms
        # Not compressed: the request is encrypted next, and compression would leak content through length.
        self.request_envelope = envelope.sign(
            request, identity, now_ms=self.sent_at_ms, ttl_ms=ttl_ms, compress=False
        )
        self.request_hash = hashlib.sha256(self.request_envelope).digest()
        self.sealed_request, self._response_key = e2e.seal(self.request_envelope, node_encryption_key)
        self.timing_tolerance_ms = timing_tolerance_ms
        self.state = "await_header"
        self._opener: e2e.StreamOpener | None = None
        self._next_seq = 0
        self.tokens_received = 0
        self.first_token_at_ms: int | None = None
        self.end_at_ms: int | None = None
        self.end: ResponseEnd | None = None
        self.receipt: envelope.Signed[Receipt] | None = None
        self.chunks: list[bytes] = []
        """The answer's chunk messages as decrypted (their encodings, in order): `AnswerEvidence` material."""
        self._token_ids: list[int] = []
        self._text: list[str] = []
        self._output = _OutputHasher()
        self._countersigned: bytes | None = None

    def receive(self, frame: bytes, *, now_ms: int | None = None) -> ResponseChunk | ResponseEnd | None:
        """Take the next frame from the node: None for the stream header, else the decoded message.

        `now_ms` is when the frame was read (default: now); the receipt's times are checked against it.
        """
        if self.state in ("done", "failed"):
            raise StreamError(f"exchange is {self.state}")
        try:
            return self._receive(frame, envelope.clock_ms() if now_ms is None else now_ms)
        except ProtocolError:
            self.state = "failed"
            raise

    def _receive(self, frame: bytes, now_ms: int) -> ResponseChunk | ResponseEnd | None:
        if self._opener is None:
            self._opener = e2e.StreamOpener(self._response_key, frame)
            self.state = "streaming"
            return None
        plaintext, final = self._opener.open(frame)
        msg = cast(ResponseChunk | ResponseEnd, decode_message(plaintext, (ResponseChunk, ResponseEnd)))
        if msg.seq != self._next_seq:
            raise StreamError(f"expected message seq {self._next_seq}, got {msg.seq}")
        self._next_seq += 1
        if isinstance(msg, ResponseChunk):
            if final:
                raise StreamError("stream ended on a chunk instead of an end message")
            if self.tokens_received + len(msg.token_ids) > self.request.max_tokens:
                raise StreamError(f"the node sent more than the {self.request.max_tokens} tokens asked for")
            if msg.top_per_token > self.request.top_logprobs:
                raise StreamError("the node sent more top logprobs per token than asked for")
            self.tokens_received += len(msg.token_ids)
            self._token_ids.extend(msg.token_ids)
            self._text.append(msg.text)
            self.chunks.append(plaintext)
            self._output.add(plaintext)
            if self.first_token_at_ms is None and msg.token_ids:
                self.first_token_at_ms = now_ms
            return msg
        if not final:
            raise StreamError("end message not marked final")
        self.end_at_ms = now_ms
        if msg.receipt is not None:
            self.receipt = self._check_receipt(msg, msg.receipt)
        self.end = msg
        self.state = "done"
        return msg

    def _check_receipt(self, end: ResponseEnd, receipt: bytes) -> envelope.Signed[Receipt]:
        signed = envelope.open_signed(receipt, Receipt, check_time=False)
        r = signed.message
        mismatches = [
            name
            for name, ok in (
                ("node key", signed.signer == self.request.node_key),
                ("request hash", r.request_hash == self.request_hash),
                ("request id", r.request_id == self.request.request_id),
                ("request size", r.request_bytes == len(self.request_envelope)),
                ("max tokens", r.max_tokens == self.request.max_tokens),
                ("credit", r.credit is None or r.credit == self.request.credit),
                ("model", r.model == self.request.model),
                ("client key", r.client_key == self.identity.public_key),
                ("tokens out", r.tokens_out == self.tokens_received <= self.request.max_tokens),
                *self._count_checks(r),
                ("paying wallet", r.client is None or r.client == self._offered_wallet),
                ("output hash", r.output_hash == self._output.digest()),
                ("finish reason", r.finish_reason == end.finish_reason),
                *self._timing_checks(r),
            )
            if not ok
        ]
        if mismatches:
            raise SchemaError(f"receipt does not match the exchange: {', '.join(mismatches)}")
        return signed

    def _count_checks(self, r: Receipt) -> list[tuple[str, bool]]:
        """`tokens_in` and `tokens_out` against the client's own counts (module docstring)."""
        if self.counter is None:
            return [("tokens in", r.tokens_in <= self.prompt_token_limit)]
        return [
            ("tokens in", r.tokens_in == self.counter.prompt_tokens(self.request.messages)),
            (
                "tokens out",
                self.counter.output_matches(self._token_ids, "".join(self._text), self.request.stop),
            ),
        ]

    @property
    def _offered_wallet(self) -> bytes | None:
        return self.request.credit.client if self.request.credit is not None else None

    def _timing_checks(self, r: Receipt) -> list[tuple[str, bool]]:
        """The receipt's times against what this client saw (module docstring), as (name, ok) pairs."""
        slack = self.timing_tolerance_ms
        assert self.end_at_ms is not None  # checked once the end arrived
        checks = [
            ("first token after the end", r.first_token_ms <= r.duration_ms),
            ("started before the request was signed", r.started_at_ms + slack >= self.sent_at_ms),
            ("finished after the end arrived", r.started_at_ms + r.duration_ms <= self.end_at_ms + slack),
        ]
        if self.first_token_at_ms is not None:
            first = r.started_at_ms + r.first_token_ms
            checks.append(("first token after it arrived", first <= self.first_token_at_ms + slack))
        return checks

    def countersigned_receipt(self) -> bytes:
        """The countersigned receipt to send back to the node. Only after a checked receipt arrived."""
        if self.receipt is None:
            raise SchemaError("no checked receipt to countersign")
        if self._countersigned is None:
            self._countersigned = countersign_receipt(self.receipt.raw, self.identity)
        return self._countersigned

    def receive_ack(self, frame: bytes) -> ReceiptAck:
        """Take the node's acknowledgement of the countersigned receipt sent (see the module rules)."""
        if self.state != "done" or self._countersigned is None:
            raise StreamError(
                f"no countersigned receipt awaits an acknowledgement (exchange is {self.state})"
            )
        ack = decode_message(frame, ReceiptAck)
        if ack.receipt_digest != hashlib.sha256(self._countersigned).digest():
            self.state = "failed"
            raise SchemaError("the acknowledgement is for another receipt")
        self.state = "acknowledged"
        return ack

    def close(self) -> None:
        """The transport ended: raises StreamError unless the answer ended properly."""
        if self.state != "done":
            self.state = "failed"
            raise StreamError("answer stream ended before its end message (truncated)")


class NodeExchange:
    """The node's end of one inference (see the module docstring for its rules). Make it with `accept`."""

    def __init__(
        self, signed: envelope.Signed[InferenceRequest], identity: keys.Identity, response_key: bytes
    ):
        self.signed_request = signed
        self.request = signed.message
        self.client_key = signed.signer
        self.request_hash = signed.digest
        self.identity = identity
        self.credit_client: bytes | None = None
        self.receipt_envelope: bytes | None = None
        self._sealer = e2e.StreamSealer(response_key)
        self._seq = 0
        self._output = _OutputHasher()
        self._countersigned_digest: bytes | None = None
        self.tokens_out = 0
        self.state = "streaming"

    @classmethod
    def accept(
        cls,
        sealed: bytes,
        *,
        identity: keys.Identity,
        encryption_keys: keys.EncryptionKeyPair,
        now_ms: int | None = None,
        replay: envelope.ReplayCache | None = None,
        credit_domain: TypedDomain | None = None,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
    ) -> NodeExchange:
        """Open and check a sealed request. With `credit_domain`, a credit authorisation in it must be
        signed by its client, for this session key and model, and unexpired by this node's clock (not the
        request's issue time, which the client chooses; `credit_client` is then set); whether a request
        without one is served, and whether the client's balance covers it, is the node's policy. `replay`
        remembers the request's nonce, last of all checks.
        Raises ProtocolError subclasses (BusyError when the replay cache has no room for it)."""
        now = envelope.clock_ms() if now_ms is None else now_ms
        plaintext, response_key = e2e.open_sealed(sealed, encryption_keys, limits=limits)
        signed = envelope.open_signed(plaintext, InferenceRequest, now_ms=now, limits=limits)
        request = signed.message
        if request.node_key != identity.public_key:
            raise SchemaError("request is addressed to another node")
        exchange = cls(signed, identity, response_key)
        credit = request.credit
        if credit_domain is not None and credit is not None:
            if credit.session_key != signed.signer or credit.model != request.model:
                raise SchemaError("credit authorisation is for another session key or model")
            if credit.expiry * 1000 <= now:
                raise SchemaError("credit authorisation expired")
            exchange.credit_client = eth_signer(credit, credit_domain)
        if replay is not None:
            replay.check_and_remember(signed.signer, signed.nonce, signed.expires_at_ms, now)
        return exchange

    @staticmethod
    def refusal(
        sealed: bytes,
        *,
        encryption_keys: keys.EncryptionKeyPair,
        reason: str,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
    ) -> list[bytes]:
        """The frames that tell the sender of `sealed` why it is not served: the stream header and an
        error end without a receipt, readable only by whoever sealed the request. Raises ProtocolError
        when the seal itself does not open (then there is nobody to answer)."""
        _, response_key = e2e.open_sealed(sealed, encryption_keys, limits=limits)
        sealer = e2e.StreamSealer(response_key)
        end = ResponseEnd(seq=0, finish_reason="error", error=reason[:1024])
        return [sealer.header, sealer.seal(encode_message(end), final=True)]

    def header(self) -> bytes:
        """The first frame to send: the answer stream's header."""
        return self._sealer.header

    def _push(self, msg: ResponseChunk | ResponseEnd, final: bool) -> bytes:
        if self.state != "streaming":
            raise StreamError(f"exchange is {self.state}")
        encoded = encode_message(msg)
        frame = self._sealer.seal(encoded, final=final)
        if isinstance(msg, ResponseChunk):
            self._output.add(encoded)
        self._seq += 1
        return frame

    def chunk(
        self,
        text: str,
        token_ids: tuple[int, ...] = (),
        logprobs_micro: tuple[int, ...] = (),
        top_ids: tuple[int, ...] = (),
        top_logprobs_micro: tuple[int, ...] = (),
    ) -> bytes:
        """The frame for the next piece of the answer: one token or a batch of them (the concatenated text,
        all their ids, a logprob per id or none, and the requested alternatives per id, flattened as
        `ResponseChunk` says). `TokenBatcher` makes the batches."""
        msg = ResponseChunk(
            seq=self._seq,
            text=text,
            token_ids=token_ids,
            logprobs_micro=logprobs_micro,
            top_ids=top_ids,
            top_logprobs_micro=top_logprobs_micro,
        )
        frame = self._push(msg, final=False)
        self.tokens_out += len(msg.token_ids)
        return frame

    def end(
        self,
        finish_reason: str,
        *,
        tokens_in: int,
        started_at_ms: int,
        first_token_ms: int,
        duration_ms: int,
        now_ms: int | None = None,
        error: str | None = None,
    ) -> bytes:
        """The final frame: the end message with this node's signed receipt for the answer."""
        paid = self.credit_client is not None  # only a wallet whose authorisation verified (and covers it)
        request_bytes = len(self.signed_request.raw)
        receipt = Receipt(
            request_id=self.request.request_id,
            request_hash=self.request_hash,
            request_bytes=request_bytes,
            model=self.request.model,
            client_key=self.client_key,
            client=self.credit_client,
            credit=self.request.credit if paid else None,
            max_tokens=self.request.max_tokens,
            # The bounds every receipt keeps (see Receipt, and the client rules): a tokenizer that split a
            # prompt finer than its bytes would be claiming work nobody can check, so the node never claims
            # more.
            tokens_in=min(tokens_in, request_bytes, prompt_token_bound(self.request.messages)),
            tokens_out=self.tokens_out,
            output_hash=self._output.digest(),
            started_at_ms=started_at_ms,
            first_token_ms=first_token_ms,
            duration_ms=duration_ms,
            finish_reason=finish_reason,
        )
        self.receipt_envelope = envelope.sign(receipt, self.identity, now_ms=now_ms)
        end = ResponseEnd(
            seq=self._seq, finish_reason=finish_reason, error=error, receipt=self.receipt_envelope
        )
        frame = self._push(end, final=True)
        self.state = "done"
        return frame

    def accept_countersigned(self, data: bytes) -> VerifiedReceipt:
        """Check the client's countersigned receipt for this exchange; the result is what earns rewards."""
        if self.state != "done":
            raise SchemaError(f"no receipt to countersign yet (exchange is {self.state})")
        self._countersigned_digest = hashlib.sha256(data).digest()
        verified = verify_countersigned_receipt(data)
        if verified.receipt_envelope != self.receipt_envelope:
            raise SchemaError("countersigned receipt is not this exchange's receipt")
        self.state = "countersigned"
        return verified

    def acknowledge(self, *, stored: bool, error: str | None = None) -> bytes:
        """The last frame: `stored=True` once the verified receipt is committed; else why it was not."""
        if (
            self._countersigned_digest is None
            or self.state == "acknowledged"
            or (stored and self.state != "countersigned")
        ):
            raise SchemaError(f"nothing to acknowledge (exchange is {self.state})")
        ack = ReceiptAck(receipt_digest=self._countersigned_digest, stored=stored, error=error)
        self.state = "acknowledged"
        return encode_message(ack)


class TokenBatcher:
    """Groups the tokens of one answer into chunks on a timer, sans-IO: the node brings the clock.

    Rules: `add` each piece (text, token ids, logprobs, top alternatives) as the engine yields it; it
    returns a frame to send when one is due, else None. The first piece is due at once, so batching adds
    nothing to the time to first token; later pieces are held until `interval_ms` after the previous chunk.
    When the engine stalls, call `poll` at `deadline_ms` to send what is held; before `NodeExchange.end`,
    `flush` sends whatever is left. A piece that would take the held batch over a chunk's limits
    (MAX_TOKENS_PER_CHUNK ids, MAX_CHUNK_TEXT_BYTES of text, MAX_TOP_LOGPROBS_PER_CHUNK alternatives) or
    that brings another number of alternatives per token sends the held batch first and is held itself.
    """

    def __init__(self, exchange: NodeExchange, *, interval_ms: int = DEFAULT_BATCH_MS) -> None:
        if type(interval_ms) is not int or interval_ms < 0:
            raise SchemaError("interval_ms must be a non-negative int")
        self.exchange = exchange
        self.interval_ms = interval_ms
        self._texts: list[str] = []
        self._text_bytes = 0
        self._ids: list[int] = []
        self._logprobs: list[int] = []
        self._top_ids: list[int] = []
        self._top_logprobs: list[int] = []
        self._top_per_token = 0
        self._last_sent_ms: int | None = None

    @property
    def held_tokens(self) -> int:
        return len(self._ids)

    @property
    def deadline_ms(self) -> int | None:
        """When the held pieces are due (None when nothing is held)."""
        if not self._texts:
            return None
        return 0 if self._last_sent_ms is None else self._last_sent_ms + self.interval_ms

    def add(
        self,
        text: str,
        token_ids: tuple[int, ...] = (),
        logprobs_micro: tuple[int, ...] = (),
        *,
        top_logprobs_micro: Sequence[Sequence[tuple[int, int]]] = (),
        now_ms: int | None = None,
    ) -> bytes | None:
        """Hold the next piece of the answer; returns the frame to send now, if one is due.

        `top_logprobs_micro`, when the request asked for alternatives: for each token id, its (token id,
        logprob in millionths) alternatives, best first, the same number for every token of the piece."""
        now = envelope.clock_ms() if now_ms is None else now_ms
        text_bytes = len(text.encode())
        per_token = len(top_logprobs_micro[0]) if top_logprobs_micro else 0
        top_count = per_token * len(token_ids)
        frame = None
        if self._texts and (
            len(self._ids) + len(token_ids) > MAX_TOKENS_PER_CHUNK
            or self._text_bytes + text_bytes > MAX_CHUNK_TEXT_BYTES
            or len(self._top_ids) + top_count > MAX_TOP_LOGPROBS_PER_CHUNK
            or (token_ids and self._ids and per_token != self._top_per_token)
        ):
            frame = self._send(now)
        self._texts.append(text)
        self._text_bytes += text_bytes
        self._ids.extend(token_ids)
        self._logprobs.extend(logprobs_micro)
        if token_ids:
            self._top_per_token = per_token
        for alternatives in top_logprobs_micro:
            if len(alternatives) != per_token:
                raise SchemaError("every token of a piece needs the same number of top logprobs")
            for token_id, logprob in alternatives:
                self._top_ids.append(token_id)
                self._top_logprobs.append(logprob)
        return frame if frame is not None else self.poll(now)

    def poll(self, now_ms: int | None = None) -> bytes | None:
        """The frame of the held pieces if they are due, else None."""
        deadline = self.deadline_ms
        now = envelope.clock_ms() if now_ms is None else now_ms
        return self._send(now) if deadline is not None and now >= deadline else None

    def flush(self, now_ms: int | None = None) -> bytes | None:
        """The frame of everything held, due or not (None when nothing is held)."""
        return self._send(envelope.clock_ms() if now_ms is None else now_ms) if self._texts else None

    def _send(self, now_ms: int) -> bytes:
        frame = self.exchange.chunk(
            "".join(self._texts),
            tuple(self._ids),
            tuple(self._logprobs),
            tuple(self._top_ids),
            tuple(self._top_logprobs),
        )
        self._texts, self._text_bytes, self._ids, self._logprobs = [], 0, [], []
        self._top_ids, self._top_logprobs = [], []
        self._last_sent_ms = now_ms
        return frame
