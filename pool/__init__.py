"""Model pools: membership view, benchmark attestations, request routing, failover and the light client.

- `membership`: `PoolView`, the members of one model's pool from validated heartbeats (a gossip validator);
  `find_member`, one node looked up by peer id
- `attestations`: the attestation topic's validator (a node about itself, or a validator)
- `client`: one end-to-end encrypted inference from the client's side (`complete`, `NodeContact`)
- `errors`: `PoolError` and its subclasses
"""

from pool.client import Completion, NodeContact, complete
from pool.errors import InferenceFailed, PoolError
from pool.membership import Member, PoolView, find_member

__all__ = [
    "Completion",
    "InferenceFailed",
    "Member",
    "NodeContact",
    "PoolError",
    "PoolView",
    "complete",
    "find_member",
]
