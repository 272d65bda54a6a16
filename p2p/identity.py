"""The Ed25519 identity of a peer: persistent in its data directory, or ephemeral for one session.

The peer id is derived from the public key, so a node keeps its peer id (and the on-chain binding to it)
across restarts only if the key survives; it is written once, mode 0600, in libp2p's protobuf key format
(libp2p spec peer-ids.md, "Keys"), so other libp2p tools can read it.

A client wants the opposite: every node and relay it talks to sees its peer id, so a permanent one links all
its sessions whatever session key signs them. Light clients (`HostConfig.light_client`) take an
`ephemeral_identity`, made fresh for each host and never written anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType, PrivateKey
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from p2p.errors import IdentityError

IDENTITY_FILE = "identity.key"


def load_or_create_identity(data_dir: Path) -> KeyPair:
    """Return the Ed25519 key pair stored in `data_dir`, creating (and persisting) one on first use.

    Raises IdentityError when the file exists but is unreadable or holds a non-Ed25519 key.
    """
    path = Path(data_dir) / IDENTITY_FILE
    if path.exists():
        return _read_identity(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key_pair = create_new_key_pair()
    if not _write_new_file(path, key_pair.private_key.serialize()):
        return _read_identity(path)  # another process created it first: use theirs
    return key_pair


def ephemeral_identity() -> KeyPair:
    """A fresh Ed25519 key pair that lives only as long as the process holds it (nothing is written)."""
    return create_new_key_pair()


def peer_id_of(key_pair: KeyPair) -> str:
    """The base58 peer id string of a key pair."""
    return ID.from_pubkey(key_pair.public_key).to_base58()


def _read_identity(path: Path) -> KeyPair:
    try:
        private_key = deserialize_private_key(path.read_bytes())
    except Exception as error:  # the key decoder raises protobuf and ValueError variants
        raise IdentityError(
            f"{path} is not a libp2p private key ({error}); move it away to start fresh"
        ) from error
    if private_key.get_type() != KeyType.Ed25519:
        raise IdentityError(f"{path} holds a {private_key.get_type().name} key; Dolphin peers use Ed25519")
    return KeyPair(private_key, private_key.get_public_key())


def _write_new_file(path: Path, data: bytes) -> bool:
    # O_EXCL: two processes racing on one data dir must not end up with two different identities.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as error:
        raise IdentityError(f"cannot create {path}: {error}") from error
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def signing_seed(private_key: PrivateKey) -> bytes:
    """The 32-byte Ed25519 seed of the peer key, for `protocols.keys.Identity`.

    Signed envelopes are signed with the peer key itself (DESIGN.md), so the peer id a message arrives
    from and the key that signed it are one identity; protocols/ stays free of py-libp2p types.
    """
    seed = private_key.to_bytes()
    if len(seed) != 32:
        raise IdentityError(f"expected a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return seed
