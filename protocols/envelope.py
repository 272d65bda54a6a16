"""Ed25519-signed envelopes, with domain separation per message type and replay protection.

Layout (all msgpack):

    envelope    = [1, signed_part: bin, signature: bin(64)]
    signed_part = [type: str, version: int, signer: bin(32), nonce: bin(16),
                   issued_at_ms: int, expires_at_ms: int, body]
    body        = the message's field map, or bin: a zstd frame holding that map packed

The signature is Ed25519 over  uvarint(len(domain)) ‖ domain ‖ uvarint(len(signed_part)) ‖ signed_part,  with
domain = "dolphin-network:<type>:v<version>" — the construction of libp2p's signed-envelope RFC 0002, so a
signature made for one message type (or by libp2p itself, for its records) never verifies as another.

`open_signed` checks, in this order: layout and limits; registered type (and the one the caller expects);
signature; validity window (issued not in the future beyond the allowed skew, not expired, lifetime within
the type's MAX_TTL_MS); body schema; and last, when given a `ReplayCache`, that (signer, nonce) is new —
so only fully valid messages take room in the cache. Callers with checks of their own after these (an
inference request's addressee, a topic's authorisation) pass no cache and remember the nonce themselves
once everything passed. The envelope bytes are kept as evidence; only the canonical encoding of the outer
array is accepted, so one signed message has exactly one byte string.

Clocks: a message counts as expired only EXPIRY_GRACE_MS (5 s) after its `expires_at_ms`, so a receiver a
few seconds ahead of the signer does not drop it; the replay cache keeps each nonce for that grace too, so
the grace never opens a replay window. Signers give a type at least its MIN_TTL_MS of life. The bound on
"issued in the future" (`max_skew_ms`, 30 s) is wider, as it only guards against absurd timestamps; the
expiry grace lengthens every message's life and so stays small.

Digests of envelopes identify *signatures*, not facts: a signer can sign the same content twice with two
nonces. Whatever counts work (settlement) must de-duplicate by content, e.g. (node, request_hash).
"""

from __future__ import annotations

import hashlib
import heapq
import time
import typing
from dataclasses import dataclass
from typing import Generic, TypeVar

import nacl.utils

from protocols import codec, keys
from protocols.errors import BusyError, DecodeError, ExpiredError, ReplayError, SchemaError
from protocols.framing import encode_uvarint
from protocols.schema import Message, check_expected, lookup

__all__ = [
    "ENVELOPE_VERSION",
    "EXPIRY_GRACE_MS",
    "ReplayCache",
    "Signed",
    "clock_ms",
    "domain_of",
    "open_signed",
    "sign",
]

ENVELOPE_VERSION = 1
NONCE_BYTES = 16
DEFAULT_MAX_SKEW_MS = 30_000
EXPIRY_GRACE_MS = 5_000
# Bodies at least this big are zstd-compressed when the caller leaves `compress` to us.
COMPRESS_THRESHOLD = 4096

M = TypeVar("M", bound=Message)


def domain_of(cls: type[Message]) -> bytes:
    """The signing domain of a message type."""
    return f"dolphin-network:{cls.TYPE}:v{cls.VERSION}".encode()


def _signing_input(domain: bytes, signed_part: bytes) -> bytes:
    return encode_uvarint(len(domain)) + domain + encode_uvarint(len(signed_part)) + signed_part


def clock_ms() -> int:
    """This machine's Unix time in milliseconds: the default `now_ms` everywhere in this package."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Signed(Generic[M]):
    """A verified message with who signed it, when, and the exact bytes received (the evidence)."""

    message: M
    signer: bytes
    nonce: bytes
    issued_at_ms: int
    expires_at_ms: int
    raw: bytes

    @property
    def peer_id(self) -> bytes:
        return keys.peer_id_from_public_key(self.signer)

    @property
    def digest(self) -> bytes:
        """sha256 of the envelope bytes: how receipts and evidence lists refer to it."""
        return hashlib.sha256(self.raw).digest()


def sign(
    msg: Message,
    identity: keys.Identity,
    *,
    now_ms: int | None = None,
    ttl_ms: int | None = None,
    nonce: bytes | None = None,
    compress: bool | None = None,
) -> bytes:
    """The signed envelope of `msg`: valid from `now_ms` for `ttl_ms` (default: the type's MAX_TTL_MS;
    at least its MIN_TTL_MS).

    `compress`: None compresses bodies of COMPRESS_THRESHOLD bytes and more. Pass False for anything that
    will be encrypted with attacker-influenced content beside secrets (compression leaks through length).
    """
    if not isinstance(msg, Message):
        raise SchemaError(f"not a message: {type(msg).__name__}")
    cls = type(msg)
    issued = clock_ms() if now_ms is None else now_ms
    ttl = cls.MAX_TTL_MS if ttl_ms is None else ttl_ms
    if not max(1, cls.MIN_TTL_MS) <= ttl <= cls.MAX_TTL_MS:
        raise SchemaError(f"ttl_ms must be in [{max(1, cls.MIN_TTL_MS)}, {cls.MAX_TTL_MS}] for {cls.TYPE}")
    nonce = nacl.utils.random(NONCE_BYTES) if nonce is None else nonce
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise SchemaError(f"nonce must be {NONCE_BYTES} bytes")
    body: object = msg.to_wire()
    if compress is not False:
        packed = codec.pack(body)
        if compress or len(packed) >= COMPRESS_THRESHOLD:
            body = codec.compress(packed)
    signed_part = codec.pack([cls.TYPE, cls.VERSION, identity.public_key, nonce, issued, issued + ttl, body])
    signature = identity.sign(_signing_input(domain_of(cls), signed_part))
    return codec.pack([ENVELOPE_VERSION, signed_part, signature])


def open_signed(
    data: bytes,
    expected: type[M] | tuple[type[M], ...] | None = None,
    *,
    now_ms: int | None = None,
    replay: ReplayCache | None = None,
    limits: codec.Limits = codec.DEFAULT_LIMITS,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    check_time: bool = True,
) -> Signed[M]:
    """Verify and decode a signed envelope (see the module docstring for the checks and their order).

    `check_time=False` skips the validity window, for evidence judged after the fact (receipts at
    settlement); it cannot be combined with `replay`. Raises a ProtocolError subclass and nothing else:
    DecodeError/LimitError, SchemaError, SignatureError, ExpiredError, ReplayError.
    """
    if replay is not None and not check_time:
        raise SchemaError("a replay cache needs check_time=True")
    outer = codec.unpack(data, limits)
    if (
        type(outer) is not tuple
        or len(outer) != 3
        or type(outer[1]) is not bytes
        or type(outer[2]) is not bytes
    ):
        raise DecodeError("an envelope is [version, signed_part, signature]")
    if outer[0] != ENVELOPE_VERSION or type(outer[0]) is not int:
        raise DecodeError(f"unknown envelope version {outer[0]!r}")
    signed_part, signature = outer[1], outer[2]
    # The signature covers signed_part only; refusing other encodings of the outer array (bin16 headers
    # where bin8 fits, say) makes the envelope bytes — and so every digest of them — unique.
    if codec.pack([ENVELOPE_VERSION, signed_part, signature]) != data:
        raise DecodeError("envelope is not in its canonical encoding")
    inner = codec.unpack(signed_part, limits)
    if type(inner) is not tuple or len(inner) != 7:
        raise DecodeError("an envelope's signed part has 7 items")
    type_name, version, signer, nonce, issued, expires, body = inner
    if type(signer) is not bytes or len(signer) != keys.ED25519_KEY_BYTES:
        raise DecodeError("envelope signer must be a 32-byte Ed25519 key")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise DecodeError(f"envelope nonce must be {NONCE_BYTES} bytes")
    if type(issued) is not int or type(expires) is not int or issued < 0:
        raise DecodeError("envelope times must be non-negative ints")
    cls = lookup(type_name, version)
    check_expected(cls, expected)

    keys.verify_ed25519(signer, _signing_input(domain_of(cls), signed_part), signature)

    if not 0 < expires - issued <= cls.MAX_TTL_MS:
        raise ExpiredError(f"{cls.TYPE} may live at most {cls.MAX_TTL_MS} ms, this one {expires - issued} ms")
    now = (clock_ms() if now_ms is None else now_ms) if check_time else None
    if now is not None:
        if issued > now + max_skew_ms:
            raise ExpiredError(f"{cls.TYPE} issued {issued - now} ms in the future")
        if expires + EXPIRY_GRACE_MS <= now:
            raise ExpiredError(f"{cls.TYPE} expired {now - expires} ms ago")

    if type(body) is bytes:
        body = codec.unpack(codec.decompress(body, limits.max_decompressed), limits)
    msg = cls.from_wire(body)

    if replay is not None and now is not None:  # a replay cache needs check_time (refused above)
        replay.check_and_remember(signer, nonce, expires, now)
    return Signed(typing.cast(M, msg), signer, nonce, issued, expires, bytes(data))


class ReplayCache:
    """The (signer, nonce) pairs of accepted messages, each kept until its message expires (plus the grace).

    Memory is bounded by `capacity`, and no signer holds more than `per_signer` entries. A message that
    would go over either bound is refused with BusyError; nothing remembered is ever dropped before it
    expires, so the cache never lets a replay through and a flood never refuses messages after it ends.
    What a flood can do, with as many free keys as it likes, is fill the whole cache: then new messages are
    refused as busy until its entries expire — at most one MAX_TTL_MS (plus the grace) after the flood
    stops, and only while it sends valid, signed, fully checked messages at capacity / lifetime per second
    (200,000 / 125 s = 1,600 a second for inference requests), which per-peer rate limits stop well before.
    One cache per daemon and message kind.
    """

    def __init__(self, capacity: int = 200_000, *, per_signer: int = 1024) -> None:
        if capacity < 1 or per_signer < 1:
            raise SchemaError("ReplayCache capacity and per_signer must be positive")
        self.capacity = capacity
        self.per_signer = per_signer
        self._expiry: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self._per_signer: dict[bytes, int] = {}
        self._replays = 0
        self._busy = 0

    def _forget_until(self, now_ms: int) -> None:
        heap, counts = self._heap, self._per_signer
        while heap and heap[0][0] <= now_ms:
            _, key = heapq.heappop(heap)
            del self._expiry[key]
            signer = key[:-NONCE_BYTES]
            counts[signer] -= 1
            if not counts[signer]:
                del counts[signer]

    def check_and_remember(self, signer: bytes, nonce: bytes, expires_at_ms: int, now_ms: int) -> None:
        """Remember (signer, nonce) until `expires_at_ms` + EXPIRY_GRACE_MS.

        Raises ReplayError if it was seen, BusyError if there is no room for it (the signer's quota or the
        whole cache is full); in both cases nothing is remembered.
        """
        if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
            raise SchemaError(f"nonce must be {NONCE_BYTES} bytes")
        self._forget_until(now_ms)
        key = signer + nonce
        if key in self._expiry:
            self._replays += 1
            raise ReplayError("this (signer, nonce) was already accepted")
        held = self._per_signer.get(signer, 0)
        if held >= self.per_signer:
            self._busy += 1
            raise BusyError(f"this signer already has {held} unexpired messages here; try again later")
        if len(self._expiry) >= self.capacity:
            self._busy += 1
            raise BusyError("replay cache is full (too many unexpired messages); try again later")
        until = expires_at_ms + EXPIRY_GRACE_MS
        self._expiry[key] = until
        heapq.heappush(self._heap, (until, key))
        self._per_signer[signer] = held + 1

    def __len__(self) -> int:
        return len(self._expiry)

    def statistics(self) -> dict[str, int]:
        return {
            "entries": len(self._expiry),
            "capacity": self.capacity,
            "signers": len(self._per_signer),
            "per_signer": self.per_signer,
            "refused_replays": self._replays,
            "refused_busy": self._busy,
        }
