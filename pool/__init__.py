"""Model pools: membership view, benchmark attestations, request routing, failover and the light client.

- `client`: one end-to-end encrypted inference from the client's side (`complete`, `NodeContact`)
- `errors`: `PoolError` and its subclasses
"""

from pool.client import Completion, NodeContact, complete
from pool.errors import InferenceFailed, PoolError

__all__ = ["Completion", "InferenceFailed", "NodeContact", "PoolError", "complete"]
