"""Binding this node to its operator's wallet on chain, and the binding's copy in the data dir.

`register_node` (blocking: chain calls) signs the operator binding of this node's peer id with the
operator's key (EIP-712 against the Bonding contract), registers it with `Bonding.registerNode`, and
keeps the signed binding in <data dir>/operator-binding.json. The daemon puts it in every heartbeat, so
pool views know which operator stands behind the node; a node without it is announced as unregistered.
The peer id comes from the data dir's libp2p key, so the binding holds as long as that key does.
"""

from __future__ import annotations

import json
from pathlib import Path

from chain.client import ChainClient
from node.errors import NodeError
from p2p.identity import load_or_create_identity, signing_seed
from protocols.errors import ProtocolError
from protocols.eth import keccak256
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text
from protocols.messages import OperatorBinding
from runtime.files import write_atomically

__all__ = ["BINDING_FILE", "load_binding", "node_peer_id", "register_node"]

BINDING_FILE = "operator-binding.json"


def node_peer_id(data_dir: Path) -> bytes:
    """The binary peer id of the node whose key lives in `data_dir` (created on first use)."""
    identity = Identity(signing_seed(load_or_create_identity(Path(data_dir)).private_key))
    return peer_id_from_public_key(identity.public_key)


def register_node(data_dir: Path, client: ChainClient) -> OperatorBinding:
    """Register this node for `client`'s account (the operator) and store the binding; returns it."""
    peer_id = node_peer_id(data_dir)
    binding = client.register_node(keccak256(peer_id))
    document = {
        "peer_id": peer_id_to_text(peer_id),
        "operator": "0x" + binding.operator.hex(),
        "peer_id_hash": binding.peer_id_hash.hex(),
        "nonce": binding.nonce,
        "signature": binding.signature.hex(),
        "chain_id": client.deployment.chain_id,
        "bonding": client.deployment.address("Bonding"),
    }
    write_atomically(Path(data_dir) / BINDING_FILE, json.dumps(document, indent=2).encode() + b"\n")
    return binding


def load_binding(data_dir: Path) -> OperatorBinding | None:
    """The stored binding, None when the node was never registered. NodeError if the file is damaged or
    binds another peer id than this data dir's key."""
    path = Path(data_dir) / BINDING_FILE
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        binding = OperatorBinding(
            operator=bytes.fromhex(document["operator"].removeprefix("0x")),
            peer_id_hash=bytes.fromhex(document["peer_id_hash"]),
            nonce=int(document["nonce"]),
            signature=bytes.fromhex(document["signature"]),
        )
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
        raise NodeError(f"{path} is damaged ({exc!r}); run `dolphin node register` again") from exc
    if binding.peer_id_hash != keccak256(node_peer_id(data_dir)):
        raise NodeError(f"{path} binds another peer id than this data dir's key; run `dolphin node register`")
    return binding
