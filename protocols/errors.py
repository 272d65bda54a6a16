"""The one error family of `protocols`: every decoder and checker here raises a ProtocolError, nothing else.

Callers that handle bytes from the network catch `ProtocolError` (or one subclass) and drop or answer; any
other exception escaping this package is a bug, and the fuzz tests treat it as one.
"""

__all__ = [
    "BusyError",
    "DecodeError",
    "DecryptError",
    "ExpiredError",
    "HashMismatch",
    "LimitError",
    "ProtocolError",
    "ReplayError",
    "SchemaError",
    "SignatureError",
    "StreamError",
]


class ProtocolError(Exception):
    """Base of every error raised by `protocols`: bad input from the network, or a misuse of the API."""


class DecodeError(ProtocolError):
    """Bytes are not a well-formed encoding (msgpack, zstd, varint frame, envelope layout)."""


class LimitError(DecodeError):
    """Input is well-formed but over a size, depth, length or decompressed-size limit."""


class SchemaError(ProtocolError):
    """A value does not fit its message schema: wrong type, missing or unknown field, out of range."""


class SignatureError(ProtocolError):
    """A signature does not verify: wrong key, wrong domain, altered bytes, or malformed signature."""


class HashMismatch(ProtocolError):
    """Content that does not hash to the digest that names it: a manifest that is not the model id's, a
    file that is not the one its manifest lists."""


class ExpiredError(ProtocolError):
    """A signed message is outside its validity window (expired, not yet valid, or lives too long)."""


class ReplayError(ProtocolError):
    """A signed message's (signer, nonce) was seen before, or is too old for the replay cache to judge."""


class BusyError(ReplayError):
    """A valid message the replay cache has no room for (its signer's quota or the whole cache is full):
    refused, never remembered and never let through; the sender may try again later."""


class DecryptError(ProtocolError):
    """Ciphertext does not authenticate: wrong key, flipped bit, or not addressed to this key."""


class StreamError(DecryptError):
    """An encrypted answer stream is broken: reordered, truncated, continued after its end, or misused."""
