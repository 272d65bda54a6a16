"""The node daemon and what it serves: model manifests, engines, the inference service, ledger, local API.

- `models`: manifests (the model id), the tiny and SmolLM2 builders, the offline loader
- `engines`: the `Engine` interface and the in-process transformers engine (batched)
- `inference`: `InferenceService`, the stream handler answering sealed requests with an encrypted stream
- `ledger`: countersigned receipts and replay nonces in SQLite (committed before acknowledged)
- `credits`: clients' on-chain credit (cached) and the policy for unpaid requests
- `keys`: the node's X25519 keys, persisted and rotated
- `announce`: the signed DHT pool record and heartbeats that tell clients this node serves a model
- `metrics`: Prometheus metrics
- `files`: atomic writes into the data dir
- `errors`: `NodeError` and its subclasses
"""

from node.errors import ModelError, ModelSourceMissing, NodeError
from node.inference import InferenceService, ServiceLimits

__all__ = ["InferenceService", "ModelError", "ModelSourceMissing", "NodeError", "ServiceLimits"]
