"""Signed pool records: how a peer says "I serve this model, reach me here, until then" in the DHT.

On the wire a record is a `protocols.messages.PoolAddresses` in a signed envelope — the project's one signed
wire format (`protocols.envelope`: RFC 0002-style domain separation, a validity window of at most a day, and
exactly one accepted byte string per signed record). It is signed with the announcing peer's Ed25519 libp2p
key, so the envelope signer *is* the peer id and a record cannot claim someone else's. This module adds what
protocols/ cannot check without libp2p — every address must parse as a multiaddr — and the view the DHT code
works with. Pure functions, no I/O: the DHT validator and tests use them the same way.
"""

from __future__ import annotations

import dataclasses

import multiaddr
from libp2p.crypto.keys import KeyType, PrivateKey

from p2p.errors import RecordError
from p2p.identity import signing_seed
from protocols import codec, envelope
from protocols.errors import ProtocolError
from protocols.keys import Identity, peer_id_to_text
from protocols.messages import PoolAddresses

MAX_RECORD_BYTES = 2048
MAX_TTL_SECONDS = PoolAddresses.MAX_TTL_MS // 1000
# A record is one small envelope: tight limits refuse anything else before it is decoded.
_LIMITS = codec.Limits(
    max_bytes=MAX_RECORD_BYTES,
    max_depth=4,
    max_container=16,
    max_objects=64,
    max_decompressed=MAX_RECORD_BYTES,
)


@dataclasses.dataclass(frozen=True)
class PoolRecord:
    """A verified record: `peer_id` serves the model named by `manifest_hash` at `addrs` until
    `expires_at_ms`. `raw` is the signed envelope, what the DHT stores."""

    peer_id: str
    addrs: tuple[str, ...]
    manifest_hash: bytes
    expires_at_ms: int
    raw: bytes

    @property
    def expires_at(self) -> int:
        """Expiry in Unix seconds."""
        return self.expires_at_ms // 1000


def sign_pool_record(
    private_key: PrivateKey,
    addrs: list[str] | tuple[str, ...],
    manifest_hash: bytes,
    ttl_seconds: int,
    *,
    now: float | None = None,
) -> PoolRecord:
    """Make a record for the key's own peer id, expiring `ttl_seconds` from now (at most a day)."""
    if private_key.get_type() != KeyType.Ed25519:
        raise RecordError("pool records are signed with Ed25519 peer keys only")
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise RecordError(f"ttl must be in (0, {MAX_TTL_SECONDS}] seconds, got {ttl_seconds}")
    addrs = tuple(str(a) for a in addrs)
    _check_addrs(addrs)
    try:
        body = PoolAddresses(model=bytes(manifest_hash), addrs=addrs)
    except ProtocolError as error:
        raise RecordError(f"invalid pool record: {error}") from error
    now_ms = envelope.clock_ms() if now is None else int(now * 1000)
    identity = Identity(signing_seed(private_key))
    raw = envelope.sign(body, identity, now_ms=now_ms, ttl_ms=ttl_seconds * 1000, compress=False)
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordError(f"record over {MAX_RECORD_BYTES} bytes: announce fewer or shorter addresses")
    return decode_pool_record(raw, now=now_ms / 1000)


def decode_pool_record(data: bytes, *, now: float | None = None) -> PoolRecord:
    """Parse and fully verify a record: size, canonical envelope, signature by the peer's own key, expiry,
    and multiaddr addresses. Raises RecordError (and nothing else) on any defect."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"record is {len(data)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    now_ms = envelope.clock_ms() if now is None else int(now * 1000)
    try:
        signed = envelope.open_signed(bytes(data), PoolAddresses, now_ms=now_ms, limits=_LIMITS)
    except ProtocolError as error:
        raise RecordError(f"invalid pool record: {error}") from error
    _check_addrs(signed.message.addrs)
    return PoolRecord(
        peer_id=peer_id_to_text(signed.peer_id),
        addrs=signed.message.addrs,
        manifest_hash=signed.message.model,
        expires_at_ms=signed.expires_at_ms,
        raw=signed.raw,
    )


def _check_addrs(addrs: tuple[str, ...]) -> None:
    for addr in addrs:
        try:
            multiaddr.Multiaddr(addr)
        except Exception as error:  # py-multiaddr raises a family of parse errors
            raise RecordError(f"record address {addr[:80]!r} is not a multiaddr: {error}") from error
