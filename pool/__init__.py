"""Model pools: membership view, benchmark attestations, request routing, failover and the light client.

- `membership`: `PoolView`, the members of one model's pool from validated heartbeats (a gossip validator)
- `attestations`: the attestation topic's validator (a node about itself, or a validator)
- `client`: one end-to-end encrypted inference from the client's side (`complete`, `NodeContact`)
- `validators`: `ValidatorDirectory`, the peers that speak for the current validators (nodes submit
  receipts to them), and the announcement a validator signs about itself
- `errors`: `PoolError` and its subclasses
"""

from pool.client import Completion, NodeContact, complete
from pool.errors import InferenceFailed, PoolError
from pool.membership import Member, PoolView
from pool.validators import ValidatorDirectory, ValidatorPeer, sign_announcement

__all__ = [
    "Completion",
    "InferenceFailed",
    "Member",
    "NodeContact",
    "PoolError",
    "PoolView",
    "ValidatorDirectory",
    "ValidatorPeer",
    "complete",
    "sign_announcement",
]
