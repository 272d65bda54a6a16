"""How a client addresses one node: the small type that membership, routing and the client share."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NodeContact"]


@dataclass(frozen=True)
class NodeContact:
    """What a client needs to address one node: from its pool heartbeat, or given on the command line."""

    peer_id: str
    node_key: bytes  # Ed25519 public key behind peer_id: the request is addressed to it
    encryption_key: bytes  # X25519 key the prompt is sealed to
    model: bytes  # the model id (manifest hash) the node serves
