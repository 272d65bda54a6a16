"""The operator's own API: OpenAI-compatible HTTP on 127.0.0.1, ahead of every network request.

The whitepaper's stage 2 gives operators priority access to the model they serve: requests here go to the
engine with `Priority.LOCAL`, so they take the next free slot before any waiting network request. It binds
to 127.0.0.1 only (no authentication) and also serves the node's Prometheus metrics.

    GET  /v1/models             the model this node serves
    POST /v1/chat/completions   chat (a trailing assistant message is continued); "stream": true for SSE
    POST /v1/completions        a prompt string (or token ids), completed as is
    GET  /metrics               Prometheus text format
    GET  /health                200 while the engine is healthy, else 503

Runs on hypercorn's trio worker with a Starlette app. Prompts and answers are not logged.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.engines.base import (
    ChatTurn,
    Engine,
    EngineError,
    EngineRequestError,
    GenerationRequest,
    Piece,
    Priority,
)
from node.metrics import CONTENT_TYPE_LATEST, NodeMetrics

__all__ = ["build_app", "serve_local_api"]

_ROLES = ("system", "user", "assistant", "tool")


class _BadRequest(Exception):
    pass


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _BadRequest(f"{name} must be a number in [{low}, {high}]")
    return value


def _generation(body: dict, max_new_tokens: int, **prompt: Any) -> GenerationRequest:
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) and s for s in stop) or len(stop) > 16:
        raise _BadRequest("stop must be a string or a list of at most 16 non-empty strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _BadRequest("seed must be a non-negative integer")
    try:
        return GenerationRequest(
            max_tokens=int(_number(body, "max_tokens", min(256, max_new_tokens), 1, max_new_tokens)),
            temperature=float(_number(body, "temperature", 1.0, 0, 10)),
            top_p=float(_number(body, "top_p", 1.0, 1e-9, 1)),
            seed=seed,
            stop=stop,
            top_logprobs=int(_number(body, "top_logprobs", 0, 0, 20)),
            priority=Priority.LOCAL,
            **prompt,
        )
    except EngineRequestError as exc:
        raise _BadRequest(str(exc)) from exc


def _chat_messages(body: dict) -> tuple[ChatTurn, ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty list")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _BadRequest(f"each message needs a role in {list(_ROLES)}")
        content = message.get("content", "")
        if isinstance(content, list):  # OpenAI content parts: text parts only
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise _BadRequest("message content must be text")
        turns.append(ChatTurn(message["role"], content))
    return tuple(turns)


def build_app(
    engine: Engine,
    *,
    model_name: str,
    model_id: bytes,
    metrics: NodeMetrics,
    max_new_tokens: int,
    refusing: Callable[[], str | None] = lambda: None,
) -> Starlette:
    """The Starlette app. `refusing()` returns why local requests are refused now (draining), or None."""

    def logprobs_json(piece: Piece, tokens: list[str]) -> dict:
        content = []
        for index, (token, logprob) in enumerate(zip(tokens, piece.logprobs, strict=True)):
            entry: dict[str, Any] = {"token": token, "logprob": logprob}
            if piece.top_logprobs:
                entry["top_logprobs"] = [
                    {"token": str(token_id), "logprob": value}
                    for token_id, value in piece.top_logprobs[index]
                ]
            content.append(entry)
        return {"content": content}

    async def run(request: Request, kind: str, generation: GenerationRequest, body: dict) -> Response:
        reason = refusing()
        if reason is not None:
            metrics.refused("draining")
            return _error(503, reason, "unavailable")
        completion_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        want_logprobs = bool(body.get("logprobs"))
        started = time.monotonic()

        def choice(piece: Piece, *, delta: bool) -> dict:
            if kind == "chat":
                key = "delta" if delta else "message"
                out: dict[str, Any] = {"index": 0, key: {"role": "assistant", "content": piece.text}}
            else:
                out = {"index": 0, "text": piece.text}
            out["finish_reason"] = piece.finish_reason
            if want_logprobs:
                out["logprobs"] = logprobs_json(piece, [str(t) for t in piece.token_ids])
            return out

        def usage(prompt_tokens: int, completion_tokens: int) -> dict:
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }

        object_name = "chat.completion" if kind == "chat" else "text_completion"

        def account(last: Piece | None, tokens_out: int, first_at: float | None) -> None:
            metrics.served(
                "local",
                tokens_in=last.prompt_tokens if last else 0,
                tokens_out=tokens_out,
                ttft_s=first_at - started if first_at is not None else None,
            )
            metrics.output_tokens(tokens_out)

        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                tokens_out, first_at, last = 0, None, None
                try:
                    async for piece in engine.generate(generation):
                        if piece.token_ids and first_at is None:
                            first_at = time.monotonic()
                        tokens_out += len(piece.token_ids)
                        last = piece
                        chunk = {
                            "id": completion_id,
                            "object": f"{object_name}.chunk" if kind == "chat" else object_name,
                            "created": created,
                            "model": model_name,
                            "choices": [choice(piece, delta=True)],
                        }
                        if piece.finish_reason is not None:
                            chunk["usage"] = usage(piece.prompt_tokens, tokens_out)
                        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                except EngineError as exc:
                    yield b"data: " + json.dumps({"error": {"message": str(exc)}}).encode() + b"\n\n"
                account(last, tokens_out, first_at)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        text, tokens_out, first_at, last = [], 0, None, None
        merged_logprobs: list[dict] = []
        try:
            async for piece in engine.generate(generation):
                if piece.token_ids and first_at is None:
                    first_at = time.monotonic()
                text.append(piece.text)
                tokens_out += len(piece.token_ids)
                if want_logprobs:
                    merged_logprobs += logprobs_json(piece, [str(t) for t in piece.token_ids])["content"]
                last = piece
        except EngineRequestError as exc:
            return _error(400, str(exc))
        except EngineError as exc:
            return _error(500, str(exc), "engine_error")
        account(last, tokens_out, first_at)
        whole = Piece(
            text="".join(text),
            token_ids=(),
            logprobs=(),
            finish_reason=last.finish_reason if last else "error",
        )
        result = choice(whole, delta=False)
        if want_logprobs:
            result["logprobs"] = {"content": merged_logprobs}
        return JSONResponse(
            {
                "id": completion_id,
                "object": object_name,
                "created": created,
                "model": model_name,
                "choices": [result],
                "usage": usage(last.prompt_tokens if last else 0, tokens_out),
            }
        )

    async def read_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise _BadRequest(f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a JSON object")
        return body

    async def chat_completions(request: Request) -> Response:
        try:
            body = await read_body(request)
            generation = _generation(body, max_new_tokens, messages=_chat_messages(body))
        except _BadRequest as exc:
            return _error(400, str(exc))
        return await run(request, "chat", generation, body)

    async def completions(request: Request) -> Response:
        try:
            body = await read_body(request)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
                ids = tuple(prompt)
            elif isinstance(prompt, str) and prompt:
                ids = tuple(await engine.tokenize(prompt))
            else:
                raise _BadRequest("prompt must be a non-empty string or a list of token ids")
            generation = _generation(body, max_new_tokens, prompt_ids=ids)
        except _BadRequest as exc:
            return _error(400, str(exc))
        return await run(request, "completion", generation, body)

    async def models(request: Request) -> Response:
        entry = {
            "id": model_name,
            "object": "model",
            "created": 0,
            "owned_by": "dolphin-node",
            "dolphin_model_id": model_id.hex(),
        }
        return JSONResponse({"object": "list", "data": [entry]})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> Response:
        load = engine.load()
        status = 200 if load.healthy else 503
        return JSONResponse(
            {"healthy": load.healthy, "running": load.running, "waiting": load.waiting}, status
        )

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


async def serve_local_api(
    app: Starlette, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `app` on `address` (host:port, port 0 for any free one) until cancelled; started with the
    base URL, e.g. http://127.0.0.1:8477."""
    config = Config()
    config.bind = [address]
    config.accesslog = None  # request lines are not needed, and nothing of a prompt must reach a log
    config.errorlog = logging.getLogger("node.local_api.http")  # the daemon's log, its format
    config.graceful_timeout = 1.0
    await serve(app, config, task_status=_FirstUrl(task_status))  # type: ignore[arg-type]


class _FirstUrl:
    """Hands hypercorn's started(binds) on as started(first URL)."""

    def __init__(self, task_status: trio.TaskStatus[str]) -> None:
        self._task_status = task_status

    def started(self, binds: list[str] | None = None) -> None:
        self._task_status.started(binds[0] if binds else "")
