"""The in-process engine: a transformers model behind `Engine`, answering many requests in one batch.

One scheduler thread owns the model. Between decode steps it admits waiting requests (best priority first,
then arrival order), prefills each alone, and merges its KV cache into the running batch; every step then
decodes one token for every running answer at once. Rows of the batch are left-padded: each row's cache
ends at the batch's last column, its attention mask hides the padding, and its position ids count only
its own tokens, so a row computes what it would compute alone. Measured on the tiny model and SmolLM2
(float32, CPU): greedy ids under batching equal one-at-a-time ids token for token; logprobs can differ in
the last bits because a matrix product over 16 rows may sum in another order than over one.

Rows leave the batch when they finish or their consumer goes away (checked before every step), and
columns that only padding uses are cut off. Scoring runs on the same thread between steps, so the model
is only ever used by one thread.

The trio side of a request is an async generator: the scheduler appends (token, logprob, top) items to
the request's deque and wakes it through its trio token; the generator detokenizes incrementally, holds
back incomplete UTF-8 and possible stop-string prefixes, and yields `Piece`s.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from node.errors import ModelError
from node.models.loading import LoadedModel, load_model
from node.models.tokens import chat_token_ids

__all__ = ["TransformersEngine"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 16


@dataclass(frozen=True, slots=True)
class _Token:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class _Finished:
    reason: FinishReason
    error: str | None = None


class _Job:
    """One request between the trio side and the scheduler thread."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt_ids: list[int],
        order: int,
        trio_token: trio.lowlevel.TrioToken,
    ) -> None:
        self.request = request
        self.prompt_ids = prompt_ids
        self.order = order
        self.items: deque[_Token | _Finished] = deque()  # appended by the scheduler, popped by trio
        self.cancelled = False  # set by trio, read by the scheduler at the next step
        self._trio_token = trio_token
        self._wakeup = trio.Event()

    def __lt__(self, other: _Job) -> bool:
        return (self.request.priority, self.order) < (other.request.priority, other.order)

    # ---- scheduler thread ----
    def push(self, item: _Token | _Finished) -> None:
        self.items.append(item)

    def notify(self) -> None:
        _notify([self])

    # ---- trio side ----
    def _wake(self) -> None:
        self._wakeup.set()

    async def wait(self) -> None:
        """Until the scheduler pushed something (returns at once if items are already there)."""
        while not self.items:
            self._wakeup = trio.Event()
            if self.items:
                return
            await self._wakeup.wait()


def _notify(jobs: list[_Job]) -> None:
    """Wake the consumers of `jobs`: one call into each trio run, however many of its jobs moved (each
    call writes to trio's wakeup socket, which costs more than a small model's decode step per row)."""
    by_run: dict[trio.lowlevel.TrioToken, list[_Job]] = {}
    for job in jobs:
        by_run.setdefault(job._trio_token, []).append(job)
    for token, woken in by_run.items():
        with contextlib.suppress(trio.RunFinishedError):  # that trio run is over: nobody to wake
            token.run_sync_soon(_wake_all, woken)


def _wake_all(jobs: list[_Job]) -> None:
    for job in jobs:
        job._wake()


@dataclass
class _Row:
    """A running answer inside the batch."""

    job: _Job
    length: int  # tokens in the cache (the prompt and the generated tokens fed back so far)
    logits: Any  # the next token's logits (1-D tensor)
    generated: int = 0
    generator: Any = None


@dataclass
class _Call:
    """A function to run on the scheduler thread between steps (scoring), with its result for trio."""

    function: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TransformersStatistics:
    tokens_generated: int  # every token the scheduler chose, for every row, finished or abandoned


class TransformersEngine:
    """`Engine` over a model folder loaded in this process. Make it with `open` (blocking: use a thread)."""

    name = "transformers"

    def __init__(self, loaded: LoadedModel, *, max_batch: int = DEFAULT_MAX_BATCH, device: str | None = None):
        import torch
        import transformers

        if max_batch < 1:
            raise EngineError("max_batch must be at least 1")
        self.version = f"transformers {transformers.__version__}, torch {torch.__version__}"
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.max_batch = max_batch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(self.device)
        config = self.model.config
        self.max_model_len = min(
            loaded.manifest.serving.max_model_len, getattr(config, "max_position_embeddings", 1 << 30)
        )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else eos or ())
        self._condition = threading.Condition()
        self._waiting: list[_Job] = []
        self._calls: deque[_Call] = deque()
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._order = itertools.count()
        self._stopping = False
        self._healthy = True
        self._tokens_generated = 0
        self._thread = threading.Thread(target=self._run, name="transformers-engine", daemon=True)
        self._thread.start()

    @classmethod
    def open(
        cls,
        model_dir: Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        threads: int | None = 1,
        device: str | None = None,
        verify: bool = True,
    ) -> TransformersEngine:
        """Load `model_dir` (verified against its manifest unless `verify=False`) and start the scheduler.

        `threads` pins torch's intra-op threads (1 makes logprobs reproducible bit for bit; None leaves
        torch's default, all cores).
        """
        return cls(load_model(model_dir, verify=verify, threads=threads), max_batch=max_batch, device=device)

    # ------------------------------------------------------------------ tokens

    def _chat_ids(self, messages: Sequence[ChatTurn]) -> list[int]:
        try:
            return chat_token_ids(self.tokenizer, [(m.role, m.content) for m in messages])
        except ModelError as exc:
            raise EngineRequestError(str(exc)) from exc

    async def tokenize_chat(self, messages: Sequence[ChatTurn]) -> list[int]:
        return await trio.to_thread.run_sync(self._chat_ids, list(messages))

    async def tokenize(self, text: str) -> list[int]:
        return await trio.to_thread.run_sync(
            lambda: list(self.tokenizer.encode(text, add_special_tokens=False))
        )

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ generate

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        """Stream the answer to `request` (see `Engine.generate`)."""
        if request.prompt_ids is not None:
            prompt_ids = list(request.prompt_ids)
        else:
            prompt_ids = await self.tokenize_chat(request.messages)
        self._check_lengths(prompt_ids)
        if request.temperature < 0 or not 0 < request.top_p <= 1:
            raise EngineRequestError("temperature must be >= 0 and top_p in (0, 1]")
        job = _Job(request, prompt_ids, next(self._order), trio.lowlevel.current_trio_token())
        self._submit(job)
        text = _TextStream(self.tokenizer, request.stop)
        try:
            while True:
                await job.wait()
                tokens: list[_Token] = []
                finished: _Finished | None = None
                while job.items:
                    item = job.items.popleft()
                    if isinstance(item, _Finished):
                        finished = item
                        break
                    tokens.append(item)
                if finished is not None and finished.reason == "error":
                    raise EngineError(f"generation failed: {finished.error}")
                delta, stopped = text.add([t.token_id for t in tokens], final=finished is not None)
                if stopped:
                    finished = _Finished("stop")
                yield Piece(
                    text=delta,
                    token_ids=tuple(t.token_id for t in tokens),
                    logprobs=tuple(t.logprob for t in tokens),
                    top_logprobs=tuple(t.top for t in tokens) if request.top_logprobs else (),
                    finish_reason=finished.reason if finished else None,
                    prompt_tokens=len(prompt_ids) if finished else 0,
                )
                if finished is not None:
                    return
        finally:
            job.cancelled = True  # frees the row at the next step if it is still running
            with self._condition:
                self._condition.notify()

    def _check_lengths(self, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise EngineRequestError("the prompt is empty")
        if len(prompt_ids) >= self.max_model_len:
            raise EngineRequestError(
                f"the prompt has {len(prompt_ids)} tokens; this model takes at most {self.max_model_len - 1}"
            )
        vocabulary = self.model.config.vocab_size
        if any(not 0 <= t < vocabulary for t in prompt_ids):
            raise EngineRequestError(f"prompt token ids must be in [0, {vocabulary})")

    def _submit(self, job: _Job) -> None:
        with self._condition:
            if self._stopping:
                raise EngineUnavailable("the engine is shut down")
            heapq.heappush(self._waiting, job)
            self._condition.notify()

    # ------------------------------------------------------------------ score

    async def score(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], *, top: int = 0
    ) -> list[ScoredToken]:
        """Teacher-forced logprobs and ranks of `output_ids` after `prompt_ids`, one prefill."""
        prompt, output = list(prompt_ids), list(output_ids)
        if not output:
            return []
        self._check_lengths(prompt + output[:-1])
        call = _Call(lambda: self._score(prompt, output, top))
        with self._condition:
            if self._stopping:
                raise EngineUnavailable("the engine is shut down")
            self._calls.append(call)
            self._condition.notify()
        await trio.to_thread.run_sync(call.done.wait, abandon_on_cancel=True)
        if call.error is not None:
            raise EngineError(f"scoring failed: {call.error!r}") from call.error
        return call.result

    def _score(self, prompt: list[int], output: list[int], top: int) -> list[ScoredToken]:
        import torch

        with torch.inference_mode():
            ids = torch.tensor([prompt + output[:-1]], device=self.device)
            logits = self.model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            chosen = torch.tensor(output, device=self.device)
            chosen_logits = logits.gather(1, chosen[:, None])
            ranks = (logits > chosen_logits).sum(dim=1) + 1
            chosen_logprobs = logprobs.gather(1, chosen[:, None])[:, 0]
            tops = _top(logprobs, top)
        return [
            ScoredToken(token_id=t, logprob=lp, rank=r, top=tops[i] if top else ())
            for i, (t, lp, r) in enumerate(zip(output, chosen_logprobs.tolist(), ranks.tolist(), strict=True))
        ]

    # ------------------------------------------------------------------ load, close

    def load(self) -> EngineLoad:
        with self._condition:
            running, waiting = len(self._rows), len(self._waiting)
        return EngineLoad(
            running=running,
            waiting=waiting,
            capacity=self.max_batch,
            healthy=self._healthy and self._thread.is_alive(),
            detail={"device": str(self.device), "max_model_len": self.max_model_len},
        )

    def statistics(self) -> TransformersStatistics:
        """Counters since the engine started (tests check that leaving an answer stops its generation)."""
        return TransformersStatistics(tokens_generated=self._tokens_generated)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Stop the scheduler (unfinished answers end with an error) and wait for it; blocking."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join()

    # ------------------------------------------------------------------ the scheduler thread

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._condition:
                    while not (self._stopping or self._waiting or self._calls or self._rows):
                        self._condition.wait()
                    if self._stopping:
                        break
                    calls = list(self._calls)
                    self._calls.clear()
                    free = self.max_batch - len(self._rows)
                    admitted = [heapq.heappop(self._waiting) for _ in range(min(free, len(self._waiting)))]
                for call in calls:
                    self._run_call(call)
                for job in admitted:
                    if not job.cancelled:
                        self._admit_or_fail(job)
                try:
                    self._drop_cancelled()
                    if self._rows:
                        self._step()
                    self._healthy = True
                except Exception as exc:  # a failed forward pass: fail the batch, keep serving
                    log.exception(
                        "the transformers engine failed a step; failing %d answers", len(self._rows)
                    )
                    self._healthy = False
                    for row in self._rows:
                        row.job.push(_Finished("error", repr(exc)))
                    _notify([row.job for row in self._rows])
                    self._rows, self._cache = [], None
        self._shut_down()

    def _shut_down(self) -> None:
        with self._condition:
            jobs = [row.job for row in self._rows] + self._waiting
            self._rows, self._waiting, self._cache = [], [], None
            calls = list(self._calls)
            self._calls.clear()
        for job in jobs:
            job.push(_Finished("error", "the engine shut down"))
        _notify(jobs)
        for call in calls:
            call.error = EngineUnavailable("the engine shut down")
            call.done.set()

    def _run_call(self, call: _Call) -> None:
        try:
            call.result = call.function()
        except Exception as exc:  # handed to the caller, raised there as an EngineError
            call.error = exc
        call.done.set()

    def _admit_or_fail(self, job: _Job) -> None:
        try:
            self._admit(job)
        except Exception as exc:  # this request fails; the batch goes on
            log.warning("the transformers engine could not start an answer: %r", exc)
            job.push(_Finished("error", repr(exc)))
            job.notify()

    def _admit(self, job: _Job) -> None:
        """Prefill `job` alone and merge its cache into the batch (left-padding the shorter side)."""
        import torch
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=self.model.config)
        ids = torch.tensor([job.prompt_ids], device=self.device)
        logits = self.model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1].float()
        if any(type(layer) is not DynamicLayer for layer in cache.layers):
            raise EngineError("the transformers engine batches full-attention models only")
        generator = None
        if job.request.temperature > 0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(job.request.seed if job.request.seed is not None else _random_seed())
        row = _Row(job=job, length=len(job.prompt_ids), logits=logits, generator=generator)
        if self._cache is None:
            self._cache, self._rows = cache, [row]
            return
        width = max(self._width(), row.length)
        # A decoder-only model's DynamicCache holds full-attention layers only (keys and values), never
        # the linear-attention or dummy layers its annotations also allow.
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])  # type: ignore[union-attr]
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)])  # type: ignore[union-attr]
        self._rows.append(row)

    def _width(self) -> int:
        return self._cache.layers[0].keys.shape[-2]

    def _drop_cancelled(self) -> None:
        keep = [i for i, row in enumerate(self._rows) if not row.job.cancelled]
        self._keep_rows(keep)

    def _keep_rows(self, keep: list[int]) -> None:
        import torch

        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache = [], None
            return
        index = torch.tensor(keep, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        width = self._width()
        unused = width - max(row.length for row in self._rows)  # leading columns only padding uses
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, unused:]
            layer.values = layer.values.index_select(0, index)[:, :, unused:]

    def _step(self) -> None:
        """Choose each row's next token, then run one batched forward pass for the rows that go on."""
        import torch

        rows = self._rows
        logits = torch.stack([row.logits for row in rows])
        logprobs = torch.log_softmax(logits, dim=-1)
        greedy = logits.argmax(dim=-1).tolist()
        chosen: list[int] = []
        for i, row in enumerate(rows):
            request = row.job.request
            token = greedy[i] if row.generator is None else _sample(logits[i], request, row.generator)
            chosen.append(token)
        rows_index = torch.arange(len(rows), device=self.device)
        chosen_logprobs = logprobs[rows_index, torch.tensor(chosen, device=self.device)].tolist()
        most = max(row.job.request.top_logprobs for row in rows)
        tops = _top(logprobs, most) if most else None
        keep: list[int] = []
        self._tokens_generated += len(rows)
        for i, row in enumerate(rows):
            job = row.job
            top = tuple(tops[i][: job.request.top_logprobs]) if tops else ()
            job.push(_Token(chosen[i], chosen_logprobs[i], top))
            row.generated += 1
            if chosen[i] in self.eos_ids and not job.request.ignore_eos:
                job.push(_Finished("stop"))
            elif row.generated >= job.request.max_tokens or row.length + 1 >= self.max_model_len:
                job.push(_Finished("length"))
            else:
                keep.append(i)
        _notify([row.job for row in rows])
        kept_tokens = [chosen[i] for i in keep]
        self._keep_rows(keep)
        if not self._rows:
            return
        # Row i's cache holds its `length` tokens right-aligned in `width` columns; the new token goes in
        # column `width` at position `length` (its own count, whatever the padding).
        width = self._width()
        columns = torch.arange(width + 1, device=self.device)
        starts = torch.tensor([width - row.length for row in self._rows], device=self.device)
        mask = (columns[None, :] >= starts[:, None]).long()
        positions = torch.tensor([[row.length] for row in self._rows], device=self.device)
        out = self.model(
            input_ids=torch.tensor([[t] for t in kept_tokens], device=self.device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        for i, row in enumerate(self._rows):
            row.logits = out.logits[i, -1].float()
            row.length += 1


def _pad_left(tensor: Any, width: int) -> Any:
    import torch

    missing = width - tensor.shape[-2]
    return torch.nn.functional.pad(tensor, (0, 0, missing, 0)) if missing else tensor


def _top(logprobs: Any, k: int) -> list[tuple[tuple[int, float], ...]]:
    if not k:
        return []
    values, indices = logprobs.topk(k, dim=-1)
    return [tuple(zip(i, v, strict=True)) for i, v in zip(indices.tolist(), values.tolist(), strict=True)]


def _sample(logits: Any, request: GenerationRequest, generator: Any) -> int:
    """Temperature, then nucleus (top-p) filtering, then a draw from the request's own generator."""
    import torch

    probs = torch.softmax(logits / request.temperature, dim=-1)
    if request.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > request.top_p  # keep the first token always
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def _random_seed() -> int:
    import secrets

    return secrets.randbits(63)


class _TextStream:
    """Incremental detokenization: text deltas that never end inside a UTF-8 sequence or a stop string.

    Decodes a short window (the tokens since the last emitted text) rather than the whole answer each
    time, so the cost per token stays constant.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens whose text is already in self._text
        self._text = ""  # text decoded so far (possibly not all emitted yet)
        self._emitted = 0

    def add(self, token_ids: list[int], *, final: bool) -> tuple[str, bool]:
        """Take new tokens; return (text to emit now, whether a stop string ended the answer)."""
        self._ids.extend(token_ids)
        decode = self._tokenizer.decode
        window = decode(self._ids[self._prefix :], skip_special_tokens=True)
        before = decode(self._ids[self._prefix : self._read], skip_special_tokens=True)
        if len(window) > len(before) and not window.endswith("\ufffd"):
            self._text += window[len(before) :]
            self._prefix, self._read = self._read, len(self._ids)
        elif final:
            self._text += window[len(before) :]
        for stop in self._stop:
            found = self._text.find(stop, max(0, self._emitted - len(stop) + 1))
            if found != -1:
                return self._emit(found), True
        if final or not self._stop:
            return self._emit(len(self._text)), False
        return self._emit(len(self._text) - self._held_back()), False

    def _held_back(self) -> int:
        """Length of the longest tail of the text that could still grow into a stop string."""
        tail = self._text[self._emitted :]
        for size in range(min(len(tail), max(len(s) for s in self._stop) - 1), 0, -1):
            if any(s.startswith(tail[-size:]) for s in self._stop):
                return size
        return 0

    def _emit(self, end: int) -> str:
        end = max(end, self._emitted)
        delta = self._text[self._emitted : end]
        self._emitted = end
        return delta
