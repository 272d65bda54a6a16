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
so only fully valid messages take room in the cache. The envelope bytes are kept as evidence; only the
canonical encoding of the outer array is accepted, so one signed message has exactly one byte string.

Digests of envelopes identify *signatures*, not facts: a signer can sign the same content twice with two
nonces. Whatever counts work (settlement) must de-duplicate by content, e.g. (node, request_hash).
"""

from __future__ import annotations

import hashlib
import heapq
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import nacl.utils

from protocols import codec, keys
from protocols.errors import DecodeError, ExpiredError, ReplayError, SchemaError
from protocols.framing import encode_uvarint
from protocols.schema import Message, check_expected, lookup

__all__ = ["ENVELOPE_VERSION", "ReplayCache", "Signed", "domain_of", "open_signed", "sign"]

ENVELOPE_VERSION = 1
NONCE_BYTES = 16
DEFAULT_MAX_SKEW_MS = 30_000
# Bodies at least this big are zstd-compressed when the caller leaves `compress` to us.
COMPRESS_THRESHOLD = 4096

M = TypeVar("M", bound=Message)


def domain_of(cls: type[Message]) -> bytes:
    """The signing domain of a message type."""
    return f"dolphin-network:{cls.TYPE}:v{cls.VERSION}".encode()


def _signing_input(domain: bytes, signed_part: bytes) -> bytes:
    return encode_uvarint(len(domain)) + domain + encode_uvarint(len(signed_part)) + signed_part


def _clock_ms() -> int:
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
    """The signed envelope of `msg`: valid from `now_ms` for `ttl_ms` (default: the type's MAX_TTL_MS).

    `compress`: None compresses bodies of COMPRESS_THRESHOLD bytes and more. Pass False for anything that
    will be encrypted with attacker-influenced content beside secrets (compression leaks through length).
    """
    if not isinstance(msg, Message):
        raise SchemaError(f"not a message: {type(msg).__name__}")
    cls = type(msg)
    issued = _clock_ms() if now_ms is None else now_ms
    ttl = cls.MAX_TTL_MS if ttl_ms is None else ttl_ms
    if not 0 < ttl <= cls.MAX_TTL_MS:
        raise SchemaError(f"ttl_ms must be in (0, {cls.MAX_TTL_MS}] for {cls.TYPE}")
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
    now = (_clock_ms() if now_ms is None else now_ms) if check_time else None
    if now is not None:
        if issued > now + max_skew_ms:
            raise ExpiredError(f"{cls.TYPE} issued {issued - now} ms in the future")
        if expires <= now:
            raise ExpiredError(f"{cls.TYPE} expired {now - expires} ms ago")

    if type(body) is bytes:
        body = codec.unpack(codec.decompress(body, limits.max_decompressed), limits)
    msg = cls.from_wire(body)

    if replay is not None:
        replay.check_and_remember(signer, nonce, expires, now)
    return Signed(msg, signer, nonce, issued, expires, bytes(data))


class ReplayCache:
    """The (signer, nonce) pairs of accepted messages, each kept until the message expires.

    Memory is bounded by `capacity`. When full, the entry that expires soonest is dropped and its expiry
    becomes a floor: from then on a message expiring at or before the floor is refused, since the cache can
    no longer tell whether it saw it. Under a flood this refuses some fresh messages with short lives, but it
    never lets a replay through. One cache per daemon; the messages' MAX_TTL_MS bounds how long entries stay.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise SchemaError("ReplayCache capacity must be positive")
        self.capacity = capacity
        self._expiry: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self._floor = -1
        self._refused = 0

    def _forget_until(self, now_ms: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            expiry, key = heapq.heappop(heap)
            del self._expiry[key]
            self._floor = max(self._floor, expiry)

    def check_and_remember(self, signer: bytes, nonce: bytes, expires_at_ms: int, now_ms: int) -> None:
        """Remember (signer, nonce) until `expires_at_ms`. Raises ReplayError if seen, or too old to judge."""
        self._forget_until(now_ms)
        key = signer + nonce
        if key in self._expiry:
            self._refused += 1
            raise ReplayError("this (signer, nonce) was already accepted")
        if expires_at_ms <= self._floor:
            self._refused += 1
            raise ReplayError("message is older than what the replay cache can still judge")
        self._expiry[key] = expires_at_ms
        heapq.heappush(self._heap, (expires_at_ms, key))
        if len(self._expiry) > self.capacity:
            expiry, dropped = heapq.heappop(self._heap)
            del self._expiry[dropped]
            self._floor = max(self._floor, expiry)

    def __len__(self) -> int:
        return len(self._expiry)

    def statistics(self) -> dict[str, int]:
        return {
            "entries": len(self._expiry),
            "capacity": self.capacity,
            "floor_ms": self._floor,
            "refused": self._refused,
        }
