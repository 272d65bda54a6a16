"""Inference engines behind one interface (`base.Engine`): what generates, tokenizes and scores for a node.

- `base`: the interface, its request and result types, and `EngineError` and its subclasses
- `transformers`: `TransformersEngine`, the in-process engine batching concurrent answers
"""

from node.engines.base import (
    ChatTurn,
    Engine,
    EngineError,
    EngineLoad,
    EngineRequestError,
    EngineUnavailable,
    GenerationRequest,
    Piece,
    Priority,
    ScoredToken,
)

__all__ = [
    "ChatTurn",
    "Engine",
    "EngineError",
    "EngineLoad",
    "EngineRequestError",
    "EngineUnavailable",
    "GenerationRequest",
    "Piece",
    "Priority",
    "ScoredToken",
]
