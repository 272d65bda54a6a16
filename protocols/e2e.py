"""End-to-end encryption between a client and the node that serves it; relays and gateways see ciphertext.

Request — sealed to the node's announced X25519 key with a fresh ephemeral key:

    sealed = [1, node_encryption_key: bin(32), ephemeral_key: bin(32), nonce: bin(24), ciphertext: bin]

Both sides run libsodium's crypto_kx on (ephemeral key, node key), which yields two 32-byte keys: the
client's transmit key encrypts the request with XChaCha20-Poly1305 (associated data: a label and both public
keys, so a ciphertext cannot be moved under another header); the node's transmit key keys the answer stream.
A relay learns which node key a request is for, and its size bucket: every sealed request is exactly a power
of two bytes long, at least REQUEST_MIN_BYTES (4 KiB), the plaintext padded inside (ISO/IEC 7816-4, as
libsodium's sodium_pad does it) to fill it. Powers of two rather than Padmé (Nikitin et al., PETS 2019):
Padmé bounds the overhead to 12 % but keeps 16–32 sizes per octave at prompt lengths (4–500 KB), where
powers of two keep one, so it tells about four bits more per request; a prompt crosses the network once and
costs far more GPU time than bytes, so we pay up to 2x in bytes. The floor makes every short chat (up to
~3,400 characters) one size. Sizes are of the sealed bytes themselves, so a node's 512 KiB frame limit
admits the 512 KiB bucket.

Answer — libsodium secretstream (XChaCha20-Poly1305): the node sends the 24-byte stream header, then one
ciphertext per message; the last is tagged FINAL. Secretstream authenticates order (an internal counter),
so a reordered, replayed, altered or dropped message fails to open, and a stream that ends without FINAL is
reported as truncated by `StreamOpener.close()`. Each message is padded too, because token lengths alone can
give away an answer (Weiss et al., "What Was Your Prompt?", USENIX Security 2024): every ciphertext is a
power of two bytes, at least STREAM_MIN_BYTES (256), which holds any single token with its logprob, so one
token looks like any other. What remains visible is how many messages there are and when; the node batches
tokens on a short timer (`inference.TokenBatcher`) so that is about time, not tokens. The largest chunk the
schema allows (64 KiB of text, 4096 tokens with logprobs) seals to 128 KiB.

Forward secrecy is one-sided: the ephemeral key protects the client, while anyone who later steals a node's
X25519 secret could read requests sealed to it — so nodes rotate that key (it is in their heartbeat).
"""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils

from protocols import codec
from protocols.errors import DecodeError, DecryptError, SchemaError, StreamError
from protocols.keys import EncryptionKeyPair

__all__ = [
    "REQUEST_MIN_BYTES",
    "SEAL_VERSION",
    "STREAM_MIN_BYTES",
    "StreamOpener",
    "StreamSealer",
    "open_sealed",
    "seal",
]

SEAL_VERSION = 1
_LABEL = b"dolphin-network:sealed-request:v1"
_NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_BYTES = 32
STREAM_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_AEAD_TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
_STREAM_TAG_BYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
REQUEST_MIN_BYTES = 4096
STREAM_MIN_BYTES = 256
# A sealed request's msgpack around its ciphertext: array and version (2 bytes), two keys (34 each) and the
# nonce (26) as bin8; the ciphertext's own bin16 or bin32 header comes on top (msgpack spec, "bin format").
_SEAL_FRAMING_BYTES = 2 + 34 + 34 + 26


def _power_of_two_at_least(size: int, minimum: int) -> int:
    return max(minimum, 1 << (size - 1).bit_length())


def _pad(data: bytes, size: int) -> bytes:
    # ISO/IEC 7816-4 as libsodium's sodium_pad does it (0x80, then zeros up to `size` bytes); written out
    # because pynacl's wrapper costs more than the encryption of a token chunk.
    return data + b"\x80" + bytes(size - 1 - len(data))


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\0")
    if not stripped or stripped[-1] != 0x80:
        raise DecryptError("bad padding")
    return stripped[:-1]


def _sealed_plaintext_room(sealed_size: int) -> int:
    """How many padded plaintext bytes make a sealed request of exactly `sealed_size` bytes (>= 4 KiB)."""
    ciphertext = sealed_size - _SEAL_FRAMING_BYTES - 3
    if ciphertext >= 1 << 16:
        ciphertext -= 2  # bin32 header instead of bin16
    return ciphertext - _AEAD_TAG_BYTES


def _check_key(key: object, what: str) -> bytes:
    if type(key) is not bytes or len(key) != _KEY_BYTES:
        raise SchemaError(f"{what} must be {_KEY_BYTES} bytes")
    return key


def seal(plaintext: bytes, node_encryption_key: bytes) -> tuple[bytes, bytes]:
    """Seal `plaintext` to a node's X25519 public key, padded to a power-of-two size (module docstring).

    Returns (sealed bytes, response key): the key the client opens the answer stream with.
    """
    _check_key(node_encryption_key, "node encryption key")
    ephemeral_public, ephemeral_secret = sodium.crypto_kx_keypair()
    try:
        response_key, request_key = sodium.crypto_kx_client_session_keys(
            ephemeral_public, ephemeral_secret, node_encryption_key
        )
    except nacl.exceptions.CryptoError as exc:  # a low-order point: not a usable key
        raise SchemaError("node encryption key is not a usable X25519 key") from exc
    nonce = nacl.utils.random(_NONCE_BYTES)
    sealed_size = _power_of_two_at_least(len(plaintext), REQUEST_MIN_BYTES)
    while _sealed_plaintext_room(sealed_size) <= len(plaintext):
        sealed_size *= 2
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        _pad(plaintext, _sealed_plaintext_room(sealed_size)),
        _LABEL + node_encryption_key + ephemeral_public,
        nonce,
        request_key,
    )
    sealed = codec.pack([SEAL_VERSION, node_encryption_key, ephemeral_public, nonce, ciphertext])
    return sealed, response_key


def open_sealed(
    sealed: bytes,
    keypair: EncryptionKeyPair,
    *,
    limits: codec.Limits = codec.DEFAULT_LIMITS,
) -> tuple[bytes, bytes]:
    """Open a sealed request with the node's key pair. Returns (plaintext, response key).

    Raises DecodeError for a malformed seal, DecryptError when it is for another key or does not
    authenticate.
    """
    value = codec.unpack(sealed, limits)
    if type(value) is not tuple or len(value) != 5:
        raise DecodeError("a sealed request is [version, node_key, ephemeral_key, nonce, ciphertext]")
    version, recipient, ephemeral_public, nonce, ciphertext = value
    if version != SEAL_VERSION or type(version) is not int:
        raise DecodeError(f"unknown sealed-request version {version!r}")
    for item, size, what in (
        (recipient, _KEY_BYTES, "node key"),
        (ephemeral_public, _KEY_BYTES, "ephemeral key"),
        (nonce, _NONCE_BYTES, "nonce"),
    ):
        if type(item) is not bytes or len(item) != size:
            raise DecodeError(f"sealed request {what} must be {size} bytes")
    if type(ciphertext) is not bytes:
        raise DecodeError("sealed request ciphertext must be bin")
    if recipient != keypair.public_key:
        raise DecryptError("sealed request is for another node key")
    try:
        request_key, response_key = sodium.crypto_kx_server_session_keys(
            keypair.public_key, keypair.secret_key, ephemeral_public
        )
        padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, _LABEL + recipient + ephemeral_public, nonce, request_key
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptError("sealed request does not authenticate") from exc
    return _unpad(padded), response_key


class StreamSealer:
    """The node's end of an answer stream.

    Rules: send `header` first; then `seal` once per message; the message sealed with `final=True` is the
    last, and sealing after it is a StreamError. Every ciphertext is a power of two bytes, at least
    STREAM_MIN_BYTES.
    """

    def __init__(self, response_key: bytes) -> None:
        _check_key(response_key, "response key")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, response_key)
        self.finished = False

    def seal(self, plaintext: bytes, *, final: bool = False) -> bytes:
        if self.finished:
            raise StreamError("stream already finished")
        self.finished = final
        size = _power_of_two_at_least(len(plaintext) + 1 + _STREAM_TAG_BYTES, STREAM_MIN_BYTES)
        return sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, _pad(plaintext, size - _STREAM_TAG_BYTES), tag=_TAG_FINAL if final else _TAG_MESSAGE
        )


class StreamOpener:
    """The client's end of an answer stream.

    Rules: construct with the node's header; `open` each ciphertext in the order received and get
    (plaintext, is_final); after the final message, or after any failure, `open` raises StreamError;
    `close()` when the transport ends raises StreamError unless the final message arrived (truncation).
    """

    def __init__(self, response_key: bytes, header: bytes) -> None:
        _check_key(response_key, "response key")
        if type(header) is not bytes or len(header) != STREAM_HEADER_BYTES:
            raise StreamError(f"stream header must be {STREAM_HEADER_BYTES} bytes")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, response_key)
        except nacl.exceptions.CryptoError as exc:
            raise StreamError("bad stream header") from exc
        self.finished = False
        self.broken = False

    def open(self, ciphertext: bytes) -> tuple[bytes, bool]:
        if self.broken:
            raise StreamError("stream is broken by an earlier error")
        if self.finished:
            raise StreamError("data after the end of the stream")
        if type(ciphertext) is not bytes:
            self.broken = True
            raise StreamError("ciphertext must be bytes")
        try:
            padded, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(self._state, ciphertext)
            plaintext = _unpad(padded)
        except (nacl.exceptions.CryptoError, DecryptError) as exc:
            self.broken = True
            raise StreamError(
                "stream message does not authenticate (altered, reordered or replayed)"
            ) from exc
        if tag not in (_TAG_MESSAGE, _TAG_FINAL):
            self.broken = True
            raise StreamError(f"unexpected stream tag {tag}")
        self.finished = tag == _TAG_FINAL
        return plaintext, self.finished

    def close(self) -> None:
        if not self.finished:
            self.broken = True
            raise StreamError("stream ended before its final message (truncated)")
