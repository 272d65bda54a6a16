"""Signed pool records: how a peer says "I serve this model, reach me here, until then" in the DHT.

A record is p2p's own wire format (msgpack, strict limits), signed with the announcing peer's Ed25519
libp2p key. The public key is not carried: an Ed25519 peer id is the identity multihash of the key
(libp2p spec peer-ids.md), so the signer is recovered from the peer id itself and a record cannot claim
someone else's id. Pure functions, no I/O: the DHT validator and tests use them the same way.
"""

from __future__ import annotations

import dataclasses
import time

import msgpack
import multiaddr
from libp2p.crypto.keys import KeyType, PrivateKey
from libp2p.peer.id import ID

from p2p.errors import RecordError
from p2p.topics import MANIFEST_HASH_SIZE

RECORD_VERSION = 1
MAX_RECORD_BYTES = 2048
MAX_ADDRS = 8
MAX_ADDR_CHARS = 256
MAX_TTL_SECONDS = 24 * 3600
CLOCK_SKEW_SECONDS = 60
# Domain separation: a signature over a pool record can never be replayed as any other signed message.
_SIGNING_DOMAIN = b"dolphin/pool-record/v1\x00"


@dataclasses.dataclass(frozen=True)
class PoolRecord:
    """One peer's announcement that it serves the model named by `manifest_hash`, valid until `expires_at`."""

    peer_id: str
    addrs: tuple[str, ...]
    manifest_hash: bytes
    expires_at: int
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        """The exact bytes the signature covers: every field but the signature, domain-separated."""
        body = [RECORD_VERSION, self.peer_id, list(self.addrs), self.manifest_hash, self.expires_at]
        return _SIGNING_DOMAIN + msgpack.packb(body, use_bin_type=True)


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
    now = time.time() if now is None else now
    peer_id = ID.from_pubkey(private_key.get_public_key()).to_base58()
    unsigned = PoolRecord(peer_id, tuple(str(a) for a in addrs), bytes(manifest_hash), int(now) + ttl_seconds)
    _check_fields(unsigned)
    record = dataclasses.replace(unsigned, signature=private_key.sign(unsigned.signing_bytes()))
    if len(encode_pool_record(record)) > MAX_RECORD_BYTES:
        raise RecordError(f"record over {MAX_RECORD_BYTES} bytes: announce fewer or shorter addresses")
    return record


def encode_pool_record(record: PoolRecord) -> bytes:
    """The record's wire form: a msgpack array, fields in a fixed order."""
    body = [RECORD_VERSION, record.peer_id, list(record.addrs), record.manifest_hash, record.expires_at]
    return msgpack.packb([*body, record.signature], use_bin_type=True)


def decode_pool_record(data: bytes, *, now: float | None = None) -> PoolRecord:
    """Parse and fully verify a record: size, shape, limits, signature by the peer id's key, and expiry.

    Raises RecordError (and nothing else) on any defect.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"record is {len(data)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    try:
        fields = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=MAX_RECORD_BYTES,
            max_str_len=MAX_RECORD_BYTES,
            max_array_len=MAX_ADDRS + 6,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack raises several unrelated types for malformed input
        raise RecordError(f"record is not valid msgpack: {error}") from error
    if not (isinstance(fields, list) and len(fields) == 6):
        raise RecordError("record must be a 6-element array")
    version, peer_id, addrs, manifest_hash, expires_at, signature = fields
    if version != RECORD_VERSION:
        raise RecordError(f"unknown record version {version!r}")
    if not (isinstance(addrs, list) and isinstance(signature, bytes)):
        raise RecordError("record addrs must be an array and its signature bytes")
    record = PoolRecord(peer_id, tuple(addrs), manifest_hash, expires_at, signature)
    _check_fields(record)
    _check_signature(record)
    _check_freshness(record, time.time() if now is None else now)
    return record


def _check_fields(record: PoolRecord) -> None:
    if not isinstance(record.peer_id, str) or not record.peer_id:
        raise RecordError("record peer id must be a non-empty string")
    if not isinstance(record.manifest_hash, bytes) or len(record.manifest_hash) != MANIFEST_HASH_SIZE:
        raise RecordError(f"record manifest hash must be {MANIFEST_HASH_SIZE} bytes")
    if type(record.expires_at) is not int:
        raise RecordError("record expiry must be an integer (unix seconds)")
    if not 0 < len(record.addrs) <= MAX_ADDRS:
        raise RecordError(f"record must carry 1..{MAX_ADDRS} addresses")
    for addr in record.addrs:
        if not isinstance(addr, str) or len(addr) > MAX_ADDR_CHARS:
            raise RecordError(f"record address must be a string of at most {MAX_ADDR_CHARS} chars")
        try:
            multiaddr.Multiaddr(addr)
        except Exception as error:  # py-multiaddr raises a family of parse errors
            raise RecordError(f"record address {addr!r} is not a multiaddr: {error}") from error


def _check_signature(record: PoolRecord) -> None:
    try:
        public_key = ID.from_base58(record.peer_id).extract_public_key()
    except Exception as error:  # base58 / multihash decoding errors
        raise RecordError(f"record peer id {record.peer_id!r} is not a libp2p peer id") from error
    if public_key is None or public_key.get_type() != KeyType.Ed25519:
        raise RecordError("record peer id does not embed an Ed25519 key")
    try:
        valid = public_key.verify(record.signing_bytes(), record.signature)
    except Exception:  # wrong-length signatures raise inside the verifier
        valid = False
    if not valid:
        raise RecordError(f"record signature does not verify for peer {record.peer_id}")


def _check_freshness(record: PoolRecord, now: float) -> None:
    if record.expires_at <= now:
        raise RecordError(f"record of peer {record.peer_id} expired {int(now - record.expires_at)} s ago")
    if record.expires_at > now + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS:
        raise RecordError("record expiry lies further ahead than the one-day maximum")
