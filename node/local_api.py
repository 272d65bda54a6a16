"""The operator's own API: OpenAI-compatible HTTP on 127.0.0.1, ahead of every network request.

The whitepaper's stage 2 gives operators priority access to the model they serve: requests here go to the
engine with `Priority.LOCAL`, so they take the next free slot before any waiting network request. It binds
to 127.0.0.1 only (no authentication) and also serves the node's Prometheus metrics.

    GET  /v1/models             the model this node serves
    POST /v1/chat/completions   chat (a trailing assistant message is continued); "stream": true for SSE
    POST /v1/completions        a prompt string (or token ids), completed as is
    GET  /metrics               Prometheus text format
    GET  /health                200 while the engine is healthy, else 503
    GET  /status                the node's status model as JSON (node.status), when the daemon keeps one
    GET  /dashboard             the operator's dashboard page, drawn from /status (node.dashboard)

Runs on hypercorn's trio worker with a Starlette app (`runtime.http`); requests are parsed, and answers sent
and refused, by `pool.openai_api`'s answer loop, exactly as the gateway does: a request the engine refuses
before its first token (a prompt longer than the context) is a 400 whether streamed or not, an engine that
fails a 500 (503 while it is not running). Prompts and answers are not logged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.dashboard import StatusSource, dashboard_routes
from node.engines.base import (
    Engine,
    EngineError,
    EngineRequestError,
    EngineUnavailable,
    GenerationRequest,
    Piece,
    Priority,
    chat_turns,
)
from node.metrics import CONTENT_TYPE_LATEST, NodeMetrics
from pool.openai_api import (
    AnswerEnd,
    AnswerResponse,
    CompletionShaper,
    Emit,
    OpenAIError,
    Sampling,
    model_not_found,
    parse_messages,
    parse_prompt,
    parse_sampling,
    read_json_body,
    send_answer,
)
from runtime.http import serve_http

__all__ = ["build_app", "serve_local_api"]

MAX_BODY_BYTES = 8 << 20


def _generation(sampling: Sampling, **prompt: object) -> GenerationRequest:
    try:
        return GenerationRequest(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=sampling.stop,
            top_logprobs=sampling.top_logprobs,
            priority=Priority.LOCAL,
            **prompt,  # type: ignore[arg-type]  # messages= or prompt=, each its field
        )
    except EngineRequestError as exc:
        raise OpenAIError(400, str(exc)) from exc


def _error_of(exc: EngineError) -> OpenAIError:
    """What OpenAI answers for an engine's failure: 400 for a request it cannot serve as asked, 503 while it
    is not running, 500 for anything else."""
    if isinstance(exc, EngineRequestError):
        return OpenAIError(400, str(exc))
    if isinstance(exc, EngineUnavailable):
        return OpenAIError(503, str(exc), "unavailable")
    return OpenAIError(500, str(exc), "server_error")


class _TokenTexts:
    """Token id -> its text through the engine's tokenizer, learnt piece by piece for one request: logprobs
    name tokens by their text, as OpenAI's do."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._texts: dict[int, str] = {}

    async def learn(self, piece: Piece) -> None:
        ids = [*piece.token_ids, *(alt for alts in piece.top_logprobs for alt, _ in alts)]
        for token_id in ids:
            if token_id not in self._texts:
                self._texts[token_id] = await self._engine.detokenize([token_id])

    def __call__(self, token_id: int) -> str | None:
        return self._texts.get(token_id)


def _check_model(body: dict, model_name: str, model_id: bytes) -> None:
    """A request naming a model must name this node's (by name or id); naming none means this one."""
    model = body.get("model")
    if model is not None and model not in (model_name, model_id.hex()):
        raise model_not_found(f"this node serves {model_name!r} only, not {model!r}")


def build_app(
    engine: Engine,
    *,
    model_name: str,
    model_id: bytes,
    metrics: NodeMetrics,
    max_new_tokens: int,
    refusing: Callable[[], str | None] = lambda: None,
    status: StatusSource | None = None,
) -> Starlette:
    """The Starlette app. `refusing()` returns why local requests are refused now (draining), or None;
    `status()`, when given, is the status model behind /status and the dashboard."""

    def refuse_while_draining() -> None:
        reason = refusing()
        if reason is not None:
            metrics.refused("draining")
            raise OpenAIError(503, reason, "unavailable")

    def answer(kind: str, generation: GenerationRequest, sampling: Sampling) -> AnswerResponse:
        texts = _TokenTexts(engine)
        shaper = CompletionShaper(
            kind,
            model_name,
            logprobs=sampling.logprobs,
            include_usage=sampling.include_usage,
            token_text=texts,
        )
        started = time.monotonic()
        first_at: float | None = None
        tokens_out = 0
        last: Piece | None = None

        async def on_piece(piece: Piece) -> None:
            nonlocal first_at, tokens_out, last
            if piece.token_ids and first_at is None:
                first_at = time.monotonic()
            tokens_out += len(piece.token_ids)
            last = piece
            if sampling.logprobs:
                await texts.learn(piece)

        def account() -> None:
            metrics.served(
                "local",
                tokens_in=last.prompt_tokens if last else 0,
                tokens_out=tokens_out,
                ttft_s=first_at - started if first_at is not None else None,
            )
            metrics.output_tokens(tokens_out)

        def ended() -> AnswerEnd:
            account()
            finish = last.finish_reason if last and last.finish_reason else "error"
            return AnswerEnd(finish, last.prompt_tokens if last else 0, tokens_out)

        async def produce(emit: Emit) -> None:
            try:
                async with contextlib.aclosing(engine.generate(generation)) as pieces:
                    await send_answer(emit, shaper, sampling, pieces, ended, on_piece=on_piece)
            except EngineError as exc:
                if last is not None:  # it failed while answering: what it produced was served
                    account()
                raise _error_of(exc) from exc

        return AnswerResponse(produce, streaming=sampling.stream)

    async def chat_completions(request: Request) -> Response | AnswerResponse:
        try:
            refuse_while_draining()
            body = await read_json_body(request, MAX_BODY_BYTES)
            _check_model(body, model_name, model_id)
            sampling = parse_sampling(body, max_tokens_limit=max_new_tokens)
            messages = chat_turns(parse_messages(body))
            generation = _generation(sampling, messages=messages)
        except OpenAIError as exc:
            return exc.response()
        return answer("chat", generation, sampling)

    async def completions(request: Request) -> Response | AnswerResponse:
        try:
            refuse_while_draining()
            body = await read_json_body(request, MAX_BODY_BYTES)
            _check_model(body, model_name, model_id)
            sampling = parse_sampling(body, max_tokens_limit=max_new_tokens)
            prompt = parse_prompt(body)
            ids = prompt if isinstance(prompt, tuple) else tuple(await engine.tokenize(prompt))
            generation = _generation(sampling, prompt_ids=ids)
        except OpenAIError as exc:
            return exc.response()
        return answer("completion", generation, sampling)

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
            *(dashboard_routes("node", status) if status is not None else ()),
        ]
    )


async def serve_local_api(
    app: Starlette, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `app` on `address` (host:port, port 0 for any free one) until cancelled; started with the
    base URL, e.g. http://127.0.0.1:8477."""
    await serve_http(app, address, log_name="node.local_api.http", task_status=task_status)
