"""Inference engines behind one interface (`base.Engine`): what generates, tokenizes and scores for a node.

- `base`: the interface, its request and result types, and `EngineError` and its subclasses
- `transformers`: `TransformersEngine`, the in-process engine batching concurrent answers
- `vllm_http`: `VllmEngine`, the interface over a vLLM server's OpenAI-compatible HTTP API (httpx)
- `vllm_server`: starting, supervising and stopping that server from `.venv-vllm`, or attaching to one
  (`open_vllm_engine`, `start_vllm_engine`, `serve_vllm_server`, `VllmSettings`)
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
from node.engines.vllm_http import VllmEngine
from node.engines.vllm_server import (
    VllmServer,
    VllmServerError,
    VllmSettings,
    open_vllm_engine,
    serve_vllm_server,
    start_vllm_engine,
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
    "VllmEngine",
    "VllmServer",
    "VllmServerError",
    "VllmSettings",
    "open_vllm_engine",
    "serve_vllm_server",
    "start_vllm_engine",
]
