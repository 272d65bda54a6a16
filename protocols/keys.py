"""Keys and identities: Ed25519 signing identities (the libp2p peer key), X25519 encryption keys, peer ids.

A peer id is computed here exactly as libp2p's peer-ids spec says for Ed25519 keys — the identity multihash of
the protobuf-encoded public key — so ids made here equal py-libp2p's, go-libp2p's and js-libp2p's, and this
package needs no libp2p import to check that a signer is the peer it claims to be.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from protocols.errors import DecodeError, SchemaError, SignatureError

__all__ = [
    "EncryptionKeyPair",
    "Identity",
    "peer_id_from_public_key",
    "peer_id_from_text",
    "peer_id_to_text",
    "public_key_from_peer_id",
    "verify_ed25519",
]

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
X25519_KEY_BYTES = 32

# libp2p peer-ids spec: protobuf PublicKey{Type: Ed25519 (1), Data: 32 bytes} = 08 01 12 20 <key>, wrapped in
# an identity multihash (code 0x00, length 0x24 = 36) because the encoded key is at most 42 bytes.
_ED25519_PEER_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def peer_id_from_public_key(public_key: bytes) -> bytes:
    """The binary libp2p peer id of an Ed25519 public key."""
    if type(public_key) is not bytes or len(public_key) != ED25519_KEY_BYTES:
        raise SchemaError("an Ed25519 public key is 32 bytes")
    return _ED25519_PEER_ID_PREFIX + public_key


def public_key_from_peer_id(peer_id: bytes) -> bytes:
    """The Ed25519 public key inside a binary peer id. Raises SchemaError for any other kind of peer id."""
    if type(peer_id) is not bytes or len(peer_id) != 38 or not peer_id.startswith(_ED25519_PEER_ID_PREFIX):
        raise SchemaError("not an Ed25519 identity-multihash peer id")
    return peer_id[len(_ED25519_PEER_ID_PREFIX) :]


def peer_id_to_text(peer_id: bytes) -> str:
    """Base58btc text of a binary peer id (the familiar `12D3KooW…` form)."""
    number = int.from_bytes(peer_id, "big")
    digits = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    zeros = len(peer_id) - len(peer_id.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def peer_id_from_text(text: str) -> bytes:
    """Binary peer id from its base58btc text. Raises DecodeError for text that is not base58btc."""
    if type(text) is not str or not 0 < len(text) <= 128:
        raise DecodeError("a peer id is 1 to 128 base58 characters")
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise DecodeError(f"{char!r} is not a base58 character")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature. Raises SignatureError when it does not verify or is malformed."""
    if type(public_key) is not bytes or len(public_key) != ED25519_KEY_BYTES:
        raise SignatureError("an Ed25519 public key is 32 bytes")
    if type(signature) is not bytes or len(signature) != ED25519_SIGNATURE_BYTES:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise SignatureError("Ed25519 signature does not verify") from exc


class Identity:
    """An Ed25519 signing key: a peer's libp2p identity, used for every peer-to-peer signature."""

    __slots__ = ("_key", "peer_id", "public_key")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != 32:
            raise SchemaError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        self.peer_id: bytes = peer_id_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.utils.random(32))

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed (what a key file stores)."""
        return bytes(self._key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self._key.sign(data).signature

    def __repr__(self) -> str:
        return f"Identity({peer_id_to_text(self.peer_id)})"


class EncryptionKeyPair:
    """An X25519 key pair a node announces in its heartbeat; clients seal requests to its public half."""

    __slots__ = ("public_key", "secret_key")

    def __init__(self, secret_key: bytes) -> None:
        if type(secret_key) is not bytes or len(secret_key) != X25519_KEY_BYTES:
            raise SchemaError("an X25519 secret key is 32 bytes")
        self.secret_key = secret_key
        self.public_key: bytes = nacl.bindings.crypto_scalarmult_base(secret_key)

    @classmethod
    def generate(cls) -> EncryptionKeyPair:
        return cls(nacl.utils.random(X25519_KEY_BYTES))

    def __repr__(self) -> str:
        return f"EncryptionKeyPair(public={self.public_key.hex()[:16]}…)"
