"""The OpenAI API's shapes, shared by the node's local API and the gateway: parsing requests, shaping
answers, chunks and errors, so both speak exactly the same dialect.

Requests (`parse_sampling`, `parse_messages`, `parse_prompt`): every parameter is checked and a bad one
is an `OpenAIError` (400) naming it: `max_tokens` (or `max_completion_tokens`), `temperature`, `top_p`,
`seed`, `stop` (a string or up to 16), `logprobs` and `top_logprobs` (0 to 20), `stream` and
`stream_options.include_usage`. What the network does not serve is refused with a 400 naming the
parameter, never silently ignored (`UNSERVED`): `n` other than 1, `tools`/`functions`, a `tool_choice`
or `function_call` other than "none", a `response_format` other than text, `logit_bias`, and non-zero
penalties.

Answers (`CompletionShaper`): `chat.completion` / `text_completion` objects, and for streams their
chunks as server-sent events, ended by `data: [DONE]`. With `stream_options.include_usage`, every chunk
carries `"usage": null` and one more chunk with no choices carries the usage, as OpenAI does. Logprobs
come in chat's shape `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`, and in the
legacy completions' shape `{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
"text_offset"}` for `text_completion`; a token's text is what `token_text(id)` says (the caller's
tokenizer, or the text of a one-token piece).

Errors: `{"error": {"message", "type", "param", "code"}}` with the HTTP status.

The answer loop (`send_answer`, sent by an `AnswerResponse`) is the one both APIs answer with: pieces as
stream chunks, or gathered into one completion, then a last chunk with the finish reason, the usage chunk
when asked for and `[DONE]`. The status line waits for the answer's first bytes, as OpenAI's does: a
request refused before them gets its own status (400 for one that cannot be served as asked, 404 for an
unknown model, 503 when nobody can answer now), streamed or not; a failure after them can only go into the
stream, as an error event and `[DONE]`. A client that disconnects cancels the answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import trio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

__all__ = [
    "ROLES",
    "SSE_DONE",
    "AnswerEnd",
    "AnswerResponse",
    "CompletionShaper",
    "Emit",
    "OpenAIError",
    "Sampling",
    "ShapedPiece",
    "model_not_found",
    "parse_messages",
    "parse_prompt",
    "parse_sampling",
    "read_json_body",
    "send_answer",
    "sse",
]

ROLES = ("system", "user", "assistant", "tool")
SSE_DONE = b"data: [DONE]\n\n"
MAX_STOP_SEQUENCES = 16
MAX_TOP_LOGPROBS = 20


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: `status`, and `kind` as OpenAI's error type."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        # A body refused as too large is left unread, so the server closes the connection after the
        # answer: saying so keeps a keep-alive client from sending its next request into the close.
        headers = {"connection": "close"} if self.status == 413 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def model_not_found(message: str) -> OpenAIError:
    """A request naming a model that is not served here: OpenAI's 404 for it."""
    return OpenAIError(404, message, param="model", code="model_not_found")


async def read_json_body(request: Request, max_bytes: int) -> dict:
    """The request's JSON object; 413 past `max_bytes` (checked before reading when the length is
    declared, and while reading when it is not), 400 when it is not a JSON object."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise OpenAIError(413, f"the body is over the {max_bytes}-byte limit", param=None)
    received = bytearray()
    try:
        async for part in request.stream():
            received += part
            if len(received) > max_bytes:
                raise OpenAIError(413, f"the body is over the {max_bytes}-byte limit")
    except ClientDisconnect:
        raise OpenAIError(400, "the client went away while sending the body") from None
    try:
        body = json.loads(received)
    except ValueError as exc:
        raise OpenAIError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    return body


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OpenAIError(400, f"{name} must be a number in [{low}, {high}]", param=name)
    return value


@dataclass(frozen=True)
class Sampling:
    """How to generate, as a request asked: the parameters both APIs pass on."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    logprobs: bool
    top_logprobs: int
    stream: bool
    include_usage: bool


def _refuse_unserved(body: dict) -> None:
    """A 400 naming the first parameter asking for something the network does not do (module docstring)."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise OpenAIError(400, "n must be 1: one answer per request (send n requests)", param="n")
    for name in ("tools", "functions", "logit_bias"):
        if body.get(name):
            raise OpenAIError(400, f"{name} is not supported by this network", param=name)
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise OpenAIError(400, f'{name} is not supported by this network (only "none")', param=name)
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise OpenAIError(400, 'response_format: only {"type": "text"} is supported', param="response_format")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0):
            raise OpenAIError(400, f"{name} is not supported by this network (only 0)", param=name)


def parse_sampling(body: dict, *, max_tokens_limit: int, default_max_tokens: int = 256) -> Sampling:
    """The sampling parameters of a chat or completions request; OpenAIError(400) for a bad one, or for one
    asking what the network does not serve."""
    _refuse_unserved(body)
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if (
        not isinstance(stop, list | tuple)
        or not all(isinstance(s, str) and s for s in stop)
        or len(stop) > MAX_STOP_SEQUENCES
    ):
        raise OpenAIError(
            400, "stop must be a string or a list of at most 16 non-empty strings", param="stop"
        )
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise OpenAIError(400, "seed must be a non-negative integer below 2**64", param="seed")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    default = min(default_max_tokens, max_tokens_limit)
    max_tokens = _number(body, name, default, 1, max_tokens_limit)
    if max_tokens != int(max_tokens):
        raise OpenAIError(400, f"{name} must be an integer", param=name)
    logprobs = body.get("logprobs")
    logprobs = False if logprobs is None else logprobs
    if isinstance(logprobs, int) and not isinstance(logprobs, bool):  # the legacy completions form: a count
        top_default, logprobs = logprobs, True
    else:
        top_default = 0
    if not isinstance(logprobs, bool):
        raise OpenAIError(400, "logprobs must be true or false", param="logprobs")
    top_logprobs = _number(body, "top_logprobs", top_default, 0, MAX_TOP_LOGPROBS)
    if top_logprobs != int(top_logprobs) or (top_logprobs and not logprobs):
        raise OpenAIError(
            400, "top_logprobs must be an integer, and needs logprobs: true", param="top_logprobs"
        )
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise OpenAIError(400, "stream_options must be an object", param="stream_options")
    return Sampling(
        max_tokens=int(max_tokens),
        temperature=float(_number(body, "temperature", 1.0, 0, 2)),
        top_p=float(_number(body, "top_p", 1.0, 1e-9, 1)),
        seed=seed,
        stop=tuple(stop),
        logprobs=logprobs,
        top_logprobs=int(top_logprobs),
        stream=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
    )


def parse_messages(body: dict) -> tuple[tuple[str, str], ...]:
    """The chat's (role, content) pairs; content parts are joined from their text parts."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "messages must be a non-empty list", param="messages")
    chat = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise OpenAIError(400, f"each message needs a role in {list(ROLES)}", param="messages")
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts: text parts only
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise OpenAIError(400, "message content must be text", param="messages")
        chat.append((message["role"], content))
    return tuple(chat)


def parse_prompt(body: dict) -> str | tuple[int, ...]:
    """A completions request's prompt: a non-empty string, or a list of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and t >= 0 for t in prompt):
        return tuple(prompt)
    if isinstance(prompt, str) and prompt:
        return prompt
    raise OpenAIError(400, "prompt must be a non-empty string or a list of token ids", param="prompt")


def sse(event: dict) -> bytes:
    """One server-sent event carrying `event` as JSON."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


TopLogprobs = Sequence[Sequence[tuple[int, float]]]


class CompletionShaper:
    """The JSON of one completion, whole or as stream chunks (module docstring). `kind` is "chat" or
    "completion"; `model` the name answers carry."""

    def __init__(
        self,
        kind: str,
        model: str,
        *,
        logprobs: bool = False,
        include_usage: bool = False,
        token_text: Callable[[int], str | None] | None = None,
        completion_id: str | None = None,
    ) -> None:
        self.kind = kind
        self.model = model
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.token_text = token_text
        self.id = completion_id or f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if kind == "chat" else "text_completion"
        self._text_offset = 0

    def logprobs_content(
        self,
        token_ids: Sequence[int],
        logprobs: Sequence[float],
        top: TopLogprobs = (),
        piece_text: str | None = None,
    ) -> list[dict]:
        """One entry per token; empty when the tokens came without logprobs. A token's text is
        `token_text(id)`; without it, the piece's text when the piece is that one token, else vLLM's
        `token_id:<id>` form with `bytes` null (a gateway holds no tokenizer)."""
        known = {}
        if piece_text is not None and len(token_ids) == 1:
            known[token_ids[0]] = piece_text

        def entry(token_id: int, logprob: float) -> dict:
            text = self.token_text(token_id) if self.token_text is not None else known.get(token_id)
            if text is None:
                return {"token": f"token_id:{token_id}", "logprob": logprob, "bytes": None}
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        content = []
        for index, (token_id, logprob) in enumerate(zip(token_ids, logprobs, strict=False)):
            alternatives = top[index] if index < len(top) else ()
            content.append(entry(token_id, logprob) | {"top_logprobs": [entry(*alt) for alt in alternatives]})
        return content

    def _choice(
        self, text: str, finish_reason: str | None, logprobs: list[dict] | None, *, delta: bool
    ) -> dict:
        if self.kind == "chat":
            key = "delta" if delta else "message"
            choice: dict[str, Any] = {"index": 0, key: {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["finish_reason"] = finish_reason
        if not self.logprobs or logprobs is None:
            choice["logprobs"] = None
        elif self.kind == "chat":
            choice["logprobs"] = {"content": logprobs}
        else:
            choice["logprobs"] = self._legacy_logprobs(logprobs)
        return choice

    def _legacy_logprobs(self, content: list[dict]) -> dict:
        """The completions API's logprobs object; `text_offset` counts characters from the answer's start
        across chunks."""
        offsets = []
        for entry in content:
            offsets.append(self._text_offset)
            self._text_offset += len(entry["token"])
        return {
            "tokens": [entry["token"] for entry in content],
            "token_logprobs": [entry["logprob"] for entry in content],
            "top_logprobs": [
                {alt["token"]: alt["logprob"] for alt in entry["top_logprobs"]} for entry in content
            ],
            "text_offset": offsets,
        }

    def _envelope(self, choices: list[dict], *, chunk: bool) -> dict:
        name = f"{self.object}.chunk" if chunk and self.kind == "chat" else self.object
        return {
            "id": self.id,
            "object": name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunk(
        self,
        text: str,
        *,
        token_ids: Sequence[int] = (),
        logprobs: Sequence[float] = (),
        top_logprobs: TopLogprobs = (),
        finish_reason: str | None = None,
    ) -> dict:
        """A stream chunk with this piece of the answer (and the finish reason on the last one)."""
        content = self.logprobs_content(token_ids, logprobs, top_logprobs, text) if self.logprobs else None
        event = self._envelope([self._choice(text, finish_reason, content, delta=True)], chunk=True)
        if self.include_usage:
            event["usage"] = None
        return event

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        """The stream's extra last chunk when usage was asked for: no choices, the usage."""
        event = self._envelope([], chunk=True)
        event["usage"] = usage(prompt_tokens, completion_tokens)
        return event

    def completion(
        self,
        text: str,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        logprobs: list[dict] | None,
    ) -> dict:
        """The whole answer."""
        event = self._envelope([self._choice(text, finish_reason, logprobs, delta=False)], chunk=False)
        event["usage"] = usage(prompt_tokens, completion_tokens)
        return event

    @staticmethod
    def error_event(message: str, kind: str = "server_error") -> dict:
        """What a stream carries when it fails after it started (the status line is already sent)."""
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# ---------------------------------------------------------------------------------------------- the answer

Emit = Callable[[bytes], Awaitable[None]]


class ShapedPiece(Protocol):
    """What `send_answer` reads of a piece of an answer: an engine's `Piece` and a node's `AnswerPiece` (as
    the light client delivers it) both are one."""

    @property
    def text(self) -> str: ...
    @property
    def token_ids(self) -> Sequence[int]: ...
    @property
    def logprobs(self) -> Sequence[float]: ...
    @property
    def top_logprobs(self) -> TopLogprobs: ...


P = TypeVar("P", bound=ShapedPiece)


@dataclass(frozen=True)
class AnswerEnd:
    """How an answer ended, once all its pieces are in: why, and the usage it reports."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


async def send_answer(
    emit: Emit,
    shaper: CompletionShaper,
    sampling: Sampling,
    pieces: AsyncIterable[P],
    ended: Callable[[], AnswerEnd],
    *,
    on_piece: Callable[[P], Awaitable[None]] | None = None,
) -> None:
    """Send the answer made of `pieces` (module docstring); `on_piece(piece)` runs as each arrives, before
    it is shaped (so a `token_text` can learn its tokens), and `ended()` once they are all in."""
    text: list[str] = []
    logprobs: list[dict] = []
    async for piece in pieces:
        if on_piece is not None:
            await on_piece(piece)
        if sampling.stream:
            if piece.text or piece.token_ids:
                chunk = shaper.chunk(
                    piece.text,
                    token_ids=piece.token_ids,
                    logprobs=piece.logprobs,
                    top_logprobs=piece.top_logprobs,
                )
                await emit(sse(chunk))
            continue
        text.append(piece.text)
        if sampling.logprobs:
            logprobs += shaper.logprobs_content(
                piece.token_ids, piece.logprobs, piece.top_logprobs, piece.text
            )
    end = ended()
    if sampling.stream:
        await emit(sse(shaper.chunk("", finish_reason=end.finish_reason)))
        if sampling.include_usage:
            await emit(sse(shaper.usage_chunk(end.prompt_tokens, end.completion_tokens)))
        await emit(SSE_DONE)
        return
    whole = shaper.completion(
        "".join(text), end.finish_reason, end.prompt_tokens, end.completion_tokens, logprobs
    )
    await emit(json.dumps(whole).encode())


class AnswerResponse:
    """An ASGI response that runs `produce(emit)` and sends what it emits, cancelled the moment the client
    disconnects. Its status line waits for the first emitted bytes, so an OpenAIError raised before them
    still gets its own status; one raised after goes into the stream (module docstring)."""

    def __init__(self, produce: Callable[[Emit], Awaitable[None]], *, streaming: bool) -> None:
        self.produce = produce
        self.streaming = streaming

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = disconnected = False
        failed: OpenAIError | None = None

        async def emit(data: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                media_type = b"text/event-stream" if self.streaming else b"application/json"
                headers = [(b"content-type", media_type)]
                if self.streaming:
                    headers.append((b"cache-control", b"no-cache"))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async with trio.open_nursery() as nursery:

            async def cancel_on_disconnect() -> None:
                nonlocal disconnected
                while (await receive())["type"] != "http.disconnect":
                    pass
                disconnected = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_on_disconnect)
            try:
                await self.produce(emit)
            except OpenAIError as exc:
                if started:
                    await emit(sse(CompletionShaper.error_event(exc.message, exc.kind)) + SSE_DONE)
                else:
                    failed = exc
            finally:
                nursery.cancel_scope.cancel()
        if disconnected:
            return
        if failed is not None:
            await failed.response()(scope, receive, send)
        elif started:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
