"""The node daemon and what it serves: model manifests, offline model builders, engines and the service.

- `models`: manifests (the model id), the tiny and SmolLM2 builders, offline loading and generation
- `inference`: `InferenceService`, the stream handler answering sealed requests with an encrypted stream
- `announce`: the signed DHT pool record and heartbeats that tell clients this node serves a model
- `errors`: `NodeError` and its subclasses
"""

from node.errors import ModelError, ModelSourceMissing, NodeError
from node.inference import InferenceService, ServiceLimits

__all__ = ["InferenceService", "ModelError", "ModelSourceMissing", "NodeError", "ServiceLimits"]
