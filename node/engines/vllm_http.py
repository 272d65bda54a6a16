"""The vLLM engine: a vLLM server's OpenAI-compatible HTTP API behind the `Engine` interface.

The server runs in its own process and virtual environment (`node.engines.vllm_server` starts and
supervises one, or `--engine-url` names one already running); this module only speaks HTTP to it with
httpx, so the daemon never imports vllm. Which endpoints carry what:

- `/v1/completions`, always with the prompt as token ids (chats are tokenized first by `/tokenize`), so the
  server never re-tokenizes text and two engines on one model folder see the same prompt ids. Streaming,
  with `return_token_ids` (the ids of each step; the end-of-sequence id is in the last step, as the
  interface asks), `logprobs` (the chosen token's logprob, plus alternatives when asked) and
  `return_tokens_as_token_ids` (alternatives keyed `token_id:N`, so no token is lost to a text key).
  Leaving `generate` early closes the HTTP stream; the server aborts the request on disconnect.
- `prompt_logprobs` on a non-streaming completion of prompt + output: one prefill, teacher forced, each
  position's logprob and rank (`score`).
- `/tokenize` (with `messages` for chats: the model's own template, `continue_final_message` for a trailing
  assistant turn) and `/detokenize`.
- `/metrics` (Prometheus text) polled on a timer by `watch_load`, so `load()` is a field read.

Priorities map onto vLLM's request `priority` (lower runs first, like `Priority`), which needs the server
started with `--scheduling-policy priority`; a server without it refuses non-zero priorities, and the engine
then logs once and sends none.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from node.engines.base import (
    ChatTurn,
    EngineError,
    EngineLoad,
    EngineRequestError,
    EngineUnavailable,
    FinishReason,
    GenerationRequest,
    Piece,
    ScoredToken,
)

__all__ = ["DEFAULT_TIMEOUT", "METRICS_INTERVAL", "VllmEngine", "special_token_ids"]

log = logging.getLogger(__name__)

# A streamed answer may wait for a slot and a long prefill on a loaded CPU server: reads get minutes, while
# connecting to a local server that is up takes milliseconds.
DEFAULT_TIMEOUT = httpx.Timeout(connect=30.0, read=300.0, write=30.0, pool=30.0)
METRICS_INTERVAL = 1.0  # seconds between /metrics polls
BACKGROUND_STOP_TIMEOUT = 90.0  # a supervised server gets SIGTERM, then SIGKILL after its stop timeout
_TOKEN_KEY_PREFIX = "token_id:"
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "cancelled"}


def special_token_ids(model_dir: Path) -> frozenset[int]:
    """Ids of the tokenizer's special tokens, from the model folder's tokenizer files.

    vLLM's `/detokenize` keeps special tokens; the interface skips them, as transformers'
    `decode(skip_special_tokens=True)` does for the added tokens flagged special.
    """
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        added = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
        return frozenset(int(token["id"]) for token in added if token.get("special"))
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
        return frozenset(int(token_id) for token_id, token in decoder.items() if token.get("special"))
    raise EngineError(f"{model_dir} has neither tokenizer.json nor tokenizer_config.json")


def _token_id(key: str) -> int:
    return int(key.removeprefix(_TOKEN_KEY_PREFIX))


def _best(alternatives: dict[str, Any], count: int) -> tuple[tuple[int, float], ...]:
    """The `count` most likely (token id, logprob) pairs of a logprobs dict, best first."""
    pairs = sorted(((_token_id(k), float(v)) for k, v in alternatives.items()), key=lambda p: -p[1])
    return tuple(pairs[:count])


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or body)[:500]


def _error_for(response: httpx.Response, what: str) -> EngineError:
    message = f"vLLM refused {what} ({response.status_code}): {_server_message(response)}"
    if response.status_code in (400, 413, 422):
        return EngineRequestError(message)
    if response.status_code >= 500:
        return EngineUnavailable(message)
    return EngineError(message)


def _parse_metrics(text: str) -> dict[str, float]:
    """Sum each `vllm:` gauge we read over its label sets (one per engine core)."""
    wanted = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            value = float(line.rsplit(" ", 1)[1])
            if math.isfinite(value):
                totals[name] = totals.get(name, 0.0) + value
    return totals


class VllmEngine:
    """One model served by a vLLM server at `url`. Build it with `VllmEngine.connect`; run `watch_load` in
    a nursery for `load()` to follow the server. `node.engines.vllm_server.open_vllm_engine` does both."""

    name = "vllm"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        model: str,
        version: str,
        max_model_len: int,
        special_ids: frozenset[int],
        capacity: int,
    ) -> None:
        self.version = version
        self.model = model  # the name the server serves the model under
        self.max_model_len = max_model_len
        self.capacity = capacity
        self._client = client
        self._special_ids = special_ids
        self._priorities = True  # until the server says it has no priority scheduling
        self._load = EngineLoad(running=0, waiting=0, capacity=capacity)
        # The supervised `vllm_server.VllmServer`, when this engine's opener started one.
        self.server: object | None = None
        self._background: tuple[trio.CancelScope, trio.Event] | None = None

    @property
    def url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    @classmethod
    async def connect(
        cls, url: str, model_dir: Path, *, capacity: int, timeout: httpx.Timeout = DEFAULT_TIMEOUT
    ) -> VllmEngine:
        """Attach to the server at `url` serving `model_dir`; EngineUnavailable when it does not answer."""
        client = httpx.AsyncClient(base_url=url, timeout=timeout, trust_env=False)
        try:
            version = (await cls._get_json(client, "/version"))["version"]
            models = (await cls._get_json(client, "/v1/models"))["data"]
            if len(models) != 1:
                raise EngineError(f"the vLLM server at {url} serves {len(models)} models; expected one")
            served = models[0]
            root = Path(served.get("root") or served["id"])
            if root.resolve() != model_dir.resolve():
                log.warning(
                    "the vLLM server at %s serves %s, not %s: the model must be the same files",
                    url,
                    root,
                    model_dir,
                )
            engine = cls(
                client,
                model=served["id"],
                version=str(version),
                max_model_len=int(served.get("max_model_len") or 0),
                special_ids=special_token_ids(model_dir),
                capacity=capacity,
            )
            await engine.refresh_load()
        except BaseException:
            await client.aclose()
            raise
        return engine

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, path: str) -> Any:
        try:
            response = await client.get(path)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"no vLLM server answering at {client.base_url} ({exc!r})") from exc
        if response.status_code != 200:
            raise _error_for(response, f"GET {path}")
        return response.json()

    async def _post_json(self, path: str, body: dict, what: str) -> Any:
        try:
            response = await self._client.post(path, json=body)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"vLLM server at {self.url} failed during {what} ({exc!r})") from exc
        if response.status_code != 200:
            raise _error_for(response, what)
        return response.json()

    # -- tokens ------------------------------------------------------------------------------------------

    async def tokenize_chat(self, messages: Sequence[ChatTurn]) -> list[int]:
        if not messages:
            raise EngineRequestError("a chat needs at least one message")
        continues = messages[-1].role == "assistant"
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": not continues,
            "continue_final_message": continues,
        }
        return list((await self._post_json("/tokenize", body, "tokenizing a chat"))["tokens"])

    async def tokenize(self, text: str) -> list[int]:
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return list((await self._post_json("/tokenize", body, "tokenizing text"))["tokens"])

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        kept = [t for t in token_ids if t not in self._special_ids]
        if not kept:
            return ""
        body = {"model": self.model, "tokens": kept}
        return str((await self._post_json("/detokenize", body, "detokenizing"))["prompt"])

    # -- generation ----------------------------------------------------------------------------------------

    def _completion_body(self, request: GenerationRequest, prompt_ids: list[int]) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt_ids,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
            "stream": True,
            "logprobs": request.top_logprobs,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "ignore_eos": request.ignore_eos,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if self._priorities:
            body["priority"] = request.priority
        return body

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        prompt_ids = (
            list(request.prompt_ids)
            if request.prompt_ids is not None
            else await self.tokenize_chat(request.messages)
        )
        try:
            for _attempt in range(2):  # a second time only without priorities, when the server refused them
                body = self._completion_body(request, prompt_ids)
                async with self._client.stream("POST", "/v1/completions", json=body) as response:
                    if response.status_code != 200:
                        await response.aread()
                        if self._refused_priority(response, body):
                            continue
                        raise _error_for(response, "a completion")
                    # Leaving this block (the caller stopped or was cancelled, or the answer ended) closes
                    # the response and its connection: vLLM aborts a request whose client disconnected.
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line.removeprefix("data: ")
                        if data == "[DONE]":
                            return
                        piece = self._piece(data, request.top_logprobs, len(prompt_ids))
                        if piece is not None:
                            yield piece
                    return
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"vLLM server at {self.url} failed mid-answer ({exc!r})") from exc

    def _refused_priority(self, response: httpx.Response, body: dict) -> bool:
        if response.status_code == 400 and body.get("priority") and "priority" in _server_message(response):
            log.warning(
                "the vLLM server at %s has no priority scheduling: requests go first come first served",
                self.url,
            )
            self._priorities = False
            return True
        return False

    @staticmethod
    def _piece(data: str, top_logprobs: int, prompt_tokens: int) -> Piece | None:
        """One streamed event as a Piece (None for the usage summary that follows the last step)."""
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineError(f"vLLM sent a malformed stream event: {data[:200]!r}") from exc
        if "error" in chunk:
            raise EngineError(f"vLLM failed mid-answer: {chunk['error'].get('message', chunk['error'])}")
        if not chunk.get("choices"):
            return None
        choice = chunk["choices"][0]
        token_ids = tuple(choice.get("token_ids") or ())
        logprobs = choice.get("logprobs") or {}
        chosen = tuple(float(lp) for lp in logprobs.get("token_logprobs") or ())
        if len(chosen) != len(token_ids):
            raise EngineError(f"vLLM sent {len(token_ids)} token ids with {len(chosen)} logprobs")
        alternatives: tuple[tuple[tuple[int, float], ...], ...] = ()
        if top_logprobs:
            alternatives = tuple(
                _best(alts or {}, top_logprobs) for alts in logprobs.get("top_logprobs") or ()
            )
        reason = choice.get("finish_reason")
        return Piece(
            text=choice.get("text") or "",
            token_ids=token_ids,
            logprobs=chosen,
            top_logprobs=alternatives,
            finish_reason=None if reason is None else _FINISH_REASONS.get(reason, "error"),
            prompt_tokens=prompt_tokens if reason is not None else 0,
        )

    # -- scoring -------------------------------------------------------------------------------------------

    async def score(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], *, top: int = 0
    ) -> list[ScoredToken]:
        if not prompt_ids:
            raise EngineRequestError("scoring needs at least one prompt token")
        if not output_ids:
            return []
        body = {
            "model": self.model,
            "prompt": [*prompt_ids, *output_ids],
            "max_tokens": 1,  # the prefill is the point; one decoded token is the least vLLM generates
            "temperature": 0.0,
            "prompt_logprobs": top,
        }
        if self._priorities:
            body["priority"] = 0
        answer = await self._post_json("/v1/completions", body, "scoring")
        positions = answer["choices"][0]["prompt_logprobs"][len(prompt_ids) :]
        scored = []
        for token_id, position in zip(output_ids, positions, strict=True):
            entry = position[str(token_id)]
            ranked = sorted(position.items(), key=lambda item: item[1]["rank"])
            scored.append(
                ScoredToken(
                    token_id=token_id,
                    logprob=float(entry["logprob"]),
                    rank=int(entry["rank"]),
                    top=tuple((int(k), float(v["logprob"])) for k, v in ranked[:top]),
                )
            )
        return scored

    # -- load ------------------------------------------------------------------------------------------

    def load(self) -> EngineLoad:
        return self._load

    async def refresh_load(self) -> None:
        """Read `/metrics` once; an unanswered poll marks the engine unhealthy until the next one answers."""
        try:
            with trio.fail_after(10):
                response = await self._client.get("/metrics")
            response.raise_for_status()
            gauges = _parse_metrics(response.text)
        except (httpx.HTTPError, trio.TooSlowError, ValueError) as exc:
            self._load = EngineLoad(
                running=self._load.running,
                waiting=self._load.waiting,
                capacity=self.capacity,
                healthy=False,
                detail={"error": repr(exc)},
            )
            return
        self._load = EngineLoad(
            running=round(gauges.get("vllm:num_requests_running", 0)),
            waiting=round(gauges.get("vllm:num_requests_waiting", 0)),
            capacity=self.capacity,
            detail={"kv_cache_usage": gauges.get("vllm:kv_cache_usage_perc", 0.0)},
        )

    async def watch_load(self, interval: float = METRICS_INTERVAL) -> None:
        """Keep `load()` current by polling `/metrics` every `interval` seconds; runs until cancelled."""
        while True:
            await self.refresh_load()
            await trio.sleep(interval)

    def bind_background(self, server: object, scope: trio.CancelScope, done: trio.Event) -> None:
        """Tie the tasks serving this engine (load watcher, server supervisor) to it: `aclose` cancels
        `scope` and waits for `done`, so a closed engine has stopped its server too."""
        self.server = server
        self._background = (scope, done)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self._background is not None:
                scope, done = self._background
                scope.cancel()
                with trio.move_on_after(BACKGROUND_STOP_TIMEOUT):
                    await done.wait()
            await self._client.aclose()
