"""Ethereum signatures for what a contract must check: EIP-712 typed-data hashing, signing and recovery.

EIP-712 (https://eips.ethereum.org/EIPS/eip-712): digest = keccak256(0x19 0x01 ‖ domainSeparator ‖
hashStruct(message)), with hashStruct(s) = keccak256(typeHash ‖ encodeData(s)). Only the types our structs
use are implemented (address, bool, bytes32, uint8..uint256, bytes, string, and arrays of those); the
structs at the bottom mirror, field for field, the type strings the contracts in contracts/ hash, and the
tests pin the EIP's own example values and cross-check every struct with eth-account.

Recovery follows OpenZeppelin's ECDSA.recover, which the contracts use: a 65-byte r‖s‖v signature with
v ∈ {27, 28} and s in the lower half of the curve order (EIP-2), so no signature has a second valid form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import coincurve
from Crypto.Hash import keccak as _keccak

from protocols.errors import SchemaError, SignatureError

__all__ = [
    "CREDIT_AUTHORISATION",
    "CREDIT_DEBIT_BATCH",
    "EPOCH_ROOT",
    "NODE_BINDING",
    "NODE_STANDING",
    "STRIKE_DECISION",
    "STRIKE_REPORT",
    "EthAccount",
    "Struct",
    "TypedDomain",
    "keccak256",
    "recover_digest",
    "to_checksum_address",
    "typed_digest",
]

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2


def keccak256(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


def to_checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address."""
    if type(address) is not bytes or len(address) != 20:
        raise SchemaError("an address is 20 bytes")
    hexed = address.hex()
    digest = keccak256(hexed.encode()).hex()
    return "0x" + "".join(
        c.upper() if int(d, 16) >= 8 else c for c, d in zip(hexed, digest[:40], strict=True)
    )


def _encode_atomic(kind: str, value: Any, name: str) -> bytes:
    if kind.endswith("[]"):
        # EIP-712: an array is keccak256 of its items' encodings, concatenated (Solidity: encodePacked).
        if type(value) not in (tuple, list):
            raise SchemaError(f"{name}: {kind} expects a sequence")
        return keccak256(b"".join(_encode_atomic(kind[:-2], item, name) for item in value))
    if kind == "address":
        if type(value) is not bytes or len(value) != 20:
            raise SchemaError(f"{name}: address must be 20 bytes")
        return value.rjust(32, b"\0")
    if kind == "bytes32":
        if type(value) is not bytes or len(value) != 32:
            raise SchemaError(f"{name}: bytes32 must be 32 bytes")
        return value
    if kind == "bool":
        if type(value) is not bool:
            raise SchemaError(f"{name}: bool expected")
        return int(value).to_bytes(32, "big")
    if kind.startswith("uint"):
        bits = int(kind[4:])
        if type(value) is not int or not 0 <= value < 1 << bits:
            raise SchemaError(f"{name}: {kind} out of range")
        return value.to_bytes(32, "big")
    if kind == "bytes":
        if type(value) is not bytes:
            raise SchemaError(f"{name}: bytes expected")
        return keccak256(value)
    if kind == "string":
        if type(value) is not str:
            raise SchemaError(f"{name}: str expected")
        return keccak256(value.encode())
    raise SchemaError(f"{name}: EIP-712 type {kind!r} is not supported here")


@dataclass(frozen=True)
class Struct:
    """An EIP-712 struct type without nested structs: name and ordered (field, atomic type) pairs."""

    name: str
    fields: tuple[tuple[str, str], ...]
    type_string: str = field(init=False)
    type_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        encoded = f"{self.name}({','.join(f'{kind} {name}' for name, kind in self.fields)})"
        object.__setattr__(self, "type_string", encoded)
        object.__setattr__(self, "type_hash", keccak256(encoded.encode()))

    def hash(self, values: Mapping[str, Any]) -> bytes:
        """hashStruct of `values` (a mapping with exactly this struct's field names)."""
        if set(values) != {name for name, _ in self.fields}:
            raise SchemaError(f"{self.name}: fields must be exactly {[n for n, _ in self.fields]}")
        parts = [self.type_hash]
        parts += [_encode_atomic(kind, values[name], f"{self.name}.{name}") for name, kind in self.fields]
        return keccak256(b"".join(parts))


_DOMAIN_STRUCT = Struct(
    "EIP712Domain",
    (("name", "string"), ("version", "string"), ("chainId", "uint256"), ("verifyingContract", "address")),
)


@dataclass(frozen=True)
class TypedDomain:
    """An EIP-712 domain: which contract, on which chain, checks the signature."""

    name: str
    version: str
    chain_id: int
    verifying_contract: bytes
    separator: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }
        object.__setattr__(self, "separator", _DOMAIN_STRUCT.hash(values))


def typed_digest(domain: TypedDomain, struct: Struct, values: Mapping[str, Any]) -> bytes:
    """The 32-byte EIP-712 digest that gets signed."""
    return keccak256(b"\x19\x01" + domain.separator + struct.hash(values))


def _address_of(public_key: coincurve.PublicKey) -> bytes:
    return keccak256(public_key.format(compressed=False)[1:])[-20:]


def recover_digest(digest: bytes, signature: bytes) -> bytes:
    """The address whose key made `signature` over `digest`. Raises SignatureError for a malformed one."""
    if type(signature) is not bytes or len(signature) != 65:
        raise SignatureError("an Ethereum signature is 65 bytes r‖s‖v")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise SignatureError("signature v must be 27 or 28")
    if not (0 < r < _SECP256K1_N and 0 < s <= _HALF_N):
        raise SignatureError("signature r or s out of range (high-s signatures are refused, EIP-2)")
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except (ValueError, TypeError) as exc:
        raise SignatureError("signature does not recover to a key") from exc
    return _address_of(key)


class EthAccount:
    """A secp256k1 key that signs EIP-712 digests (an operator's, client's or validator's wallet)."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes) -> None:
        if type(private_key) is not bytes or len(private_key) != 32:
            raise SchemaError("a secp256k1 private key is 32 bytes")
        try:
            self._key = coincurve.PrivateKey(private_key)
        except ValueError as exc:
            raise SchemaError("not a valid secp256k1 private key") from exc
        self.address: bytes = _address_of(self._key.public_key)

    @classmethod
    def generate(cls) -> EthAccount:
        return cls(coincurve.PrivateKey().secret)

    def sign_digest(self, digest: bytes) -> bytes:
        """65-byte r‖s‖v signature (v = 27 or 28, low s) of a 32-byte digest."""
        if type(digest) is not bytes or len(digest) != 32:
            raise SchemaError("a digest is 32 bytes")
        raw = self._key.sign_recoverable(digest, hasher=None)
        return raw[:64] + bytes([raw[64] + 27])

    def __repr__(self) -> str:
        return f"EthAccount({to_checksum_address(self.address)})"


# The structs contracts/ checks, field for field with their Solidity type strings (the tests pin both).
# Changing one is a breaking change for the deployed contracts.
NODE_BINDING = Struct(  # Bonding.registerNode: operator binds the node whose peer id hashes to peerIdHash
    "NodeBinding", (("operator", "address"), ("peerIdHash", "bytes32"), ("nonce", "uint256"))
)
STRIKE_DECISION = Struct(  # Slashing: a quorum of validators decides a slash
    "StrikeDecision",
    (
        ("offender", "address"),
        ("evidenceHash", "bytes32"),
        ("slashBps", "uint256"),
        ("reporter", "address"),
        ("deadline", "uint256"),
    ),
)
EPOCH_ROOT = Struct(  # RewardsDistributor: a quorum settles an epoch's rewards root and elects the next set
    "EpochRoot",
    (
        ("epoch", "uint256"),
        ("root", "bytes32"),
        ("total", "uint256"),
        ("validators", "address[]"),  # the next validator set, ascending by address
        ("weights", "uint256[]"),  # their weights in stkPOD shares
        ("deadline", "uint256"),
    ),
)
CREDIT_DEBIT_BATCH = Struct(  # Credits: a quorum of validators debits what clients spent
    "CreditDebitBatch",
    (("batchId", "uint256"), ("users", "address[]"), ("amounts", "uint256[]"), ("deadline", "uint256")),
)

# Signed with Ethereum keys but checked off chain (by nodes and validators), in the same EIP-712 form so a
# contract can check them later without a new signature scheme.
CREDIT_AUTHORISATION = Struct(  # a client's wallet lets a session key spend its credits
    "CreditAuthorisation",
    (
        ("client", "address"),
        ("sessionKey", "bytes32"),
        ("model", "bytes32"),
        ("maxCredits", "uint256"),
        ("nonce", "uint256"),
        ("expiry", "uint64"),
    ),
)
VALIDATOR_PEER = Struct(  # a validator's wallet names the libp2p peer that speaks for it until `expiry`
    "ValidatorPeer", (("validator", "address"), ("peerIdHash", "bytes32"), ("expiry", "uint64"))
)
STRIKE_REPORT = Struct(  # one validator's finding; StrikeDecision's evidence is built from these
    "StrikeReport",
    (
        ("validator", "address"),
        ("nodeKey", "bytes32"),
        ("operator", "address"),
        ("model", "bytes32"),
        ("epoch", "uint64"),
        ("reason", "uint8"),
        ("severity", "uint8"),
        ("evidenceHash", "bytes32"),
    ),
)
NODE_STANDING = Struct(  # one validator's published verdict on a node's sampled answers, for routers
    "NodeStanding",
    (
        ("validator", "address"),
        ("nodeKey", "bytes32"),
        ("model", "bytes32"),
        ("epoch", "uint64"),
        ("checks", "uint32"),
        ("failures", "uint32"),
        ("suspicionMicro", "uint32"),
        ("status", "uint8"),
    ),
)
