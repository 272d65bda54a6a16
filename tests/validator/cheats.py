"""Cheating nodes, written as test code only: engines that do what a dishonest operator's patched node would.

Each is an `Engine` (the interface a node serves through), so the same cheat can answer in process
(`validator.testing.answer_in_process`) or be passed to a real node daemon:

- model changes, applied to the weights of an in-process engine (`modified_engine`): another model with
  the same tokenizer (the tiny model re-initialised with another seed), perturbed weights (Gaussian noise
  of `strength` times each tensor's standard deviation), quantized weights (fp16, bf16, int8 per output
  row, 4-bit per group of 32);
- `FabricatingEngine`: answers with tokens it makes up (cheap text with confident logprobs), no model run;
- `PromptAlteringEngine`: injects or rewrites the system prompt before generating, and reports the
  prompt's original token count so the receipt looks right;
- `TruncatingEngine`: stops after a few tokens and claims an end of sequence, to save work;
- `SlowEngine`: delivers tokens slower than it claims (its attestation claims what it likes);
- `LaunderingEngine`: generates with a cheap model and reports the reference model's logprobs for those
  tokens (one prefill of the real model, to pass a logprob comparison).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import trio

from node.engines.base import ChatTurn, Engine, EngineLoad, GenerationRequest, Piece, ScoredToken
from node.engines.transformers import TransformersEngine

WEIGHT_CHEATS = ("other-seed", "perturb", "fp16", "bf16", "int8", "int4")


def modify_weights(model, cheat: str, strength: float = 1e-3, seed: int = 1) -> None:  # type: ignore[no-untyped-def]
    """Change `model`'s weights in place as `cheat` names (see the module docstring)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if cheat == "other-seed":
                if parameter.dim() >= 2:
                    std = float(parameter.std())
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            elif cheat == "perturb":
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(noise * parameter.std() * strength)
            elif cheat in ("fp16", "bf16"):
                dtype = torch.float16 if cheat == "fp16" else torch.bfloat16
                parameter.copy_(parameter.to(dtype).float())
            elif cheat in ("int8", "int4"):
                if parameter.dim() < 2:
                    continue
                bits, group = (8, 0) if cheat == "int8" else (4, 32)
                largest = 2 ** (bits - 1) - 1
                rows = parameter.reshape(-1, group) if group else parameter.reshape(parameter.shape[0], -1)
                scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / largest
                quantized = torch.round(rows / scale).clamp(-largest - 1, largest) * scale
                parameter.copy_(quantized.reshape(parameter.shape))
            else:
                raise ValueError(f"unknown weight cheat {cheat!r}")


def modified_engine(model_dir: Path, cheat: str, strength: float = 1e-3, **options) -> TransformersEngine:  # type: ignore[no-untyped-def]
    """An in-process engine over `model_dir` whose weights `cheat` changed (blocking)."""
    engine = TransformersEngine.open(model_dir, verify=False, **options)
    modify_weights(engine.model, cheat, strength)
    return engine


class _Wrapper:
    """An engine that passes everything to `inner` unless a cheat overrides it."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version

    async def tokenize_chat(self, messages: Sequence[ChatTurn]) -> list[int]:
        return await self.inner.tokenize_chat(messages)

    async def tokenize(self, text: str) -> list[int]:
        return await self.inner.tokenize(text)

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        return await self.inner.detokenize(token_ids)

    def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        return self.inner.generate(request)

    async def score(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], *, top: int = 0
    ) -> list[ScoredToken]:
        return await self.inner.score(prompt_ids, output_ids, top=top)

    def load(self) -> EngineLoad:
        return self.inner.load()

    async def aclose(self) -> None:
        await self.inner.aclose()


class FabricatingEngine(_Wrapper):
    """Makes answers up: random tokens of the model's vocabulary, each with a confident logprob."""

    def __init__(self, inner: Engine, *, vocabulary: int, seed: int = 7, logprob: float = -0.1) -> None:
        super().__init__(inner)
        self._rng = random.Random(seed)
        self._vocabulary = vocabulary
        self._logprob = logprob

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        prompt = await self.inner.tokenize_chat(request.messages)
        ids = [self._rng.randrange(3, self._vocabulary) for _ in range(request.max_tokens)]
        yield Piece(
            text=await self.inner.detokenize(ids),
            token_ids=tuple(ids),
            logprobs=(self._logprob,) * len(ids),
            finish_reason="length",
            prompt_tokens=len(prompt),
        )


class PromptAlteringEngine(_Wrapper):
    """Rewrites the chat before answering (`alter`), reporting the original prompt's token count."""

    def __init__(self, inner: Engine, alter: Callable[[tuple[ChatTurn, ...]], tuple[ChatTurn, ...]]) -> None:
        super().__init__(inner)
        self._alter = alter

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        original = len(await self.inner.tokenize_chat(request.messages))
        altered = GenerationRequest(
            messages=self._alter(request.messages),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=request.stop,
            top_logprobs=request.top_logprobs,
            priority=request.priority,
        )
        async for piece in self.inner.generate(altered):
            if piece.finish_reason is not None:
                piece = Piece(
                    piece.text,
                    piece.token_ids,
                    piece.logprobs,
                    piece.top_logprobs,
                    piece.finish_reason,
                    original,
                )
            yield piece


def inject_system_prompt(text: str) -> Callable[[tuple[ChatTurn, ...]], tuple[ChatTurn, ...]]:
    """An `alter` that puts `text` first as the system prompt (replacing one the client sent)."""

    def alter(messages: tuple[ChatTurn, ...]) -> tuple[ChatTurn, ...]:
        return (ChatTurn("system", text), *[m for m in messages if m.role != "system"])

    return alter


class TruncatingEngine(_Wrapper):
    """Stops after `keep` tokens to save work, and says the answer ended there: by an end-of-sequence token
    it appends (`claim="stop"`) or by its length (`claim="length"`)."""

    def __init__(
        self, inner: Engine, *, keep: int, eos_id: int, claim: str = "stop", eos_logprob: float = -0.05
    ):
        super().__init__(inner)
        self._keep = keep
        self._eos_id = eos_id
        self._claim = claim
        self._eos_logprob = eos_logprob

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        sent = 0
        prompt_tokens = len(await self.inner.tokenize_chat(request.messages))
        async for piece in self.inner.generate(request):
            if piece.finish_reason is not None and sent + len(piece.token_ids) <= self._keep:
                yield piece  # it ended on its own before the cut
                return
            room = self._keep - sent
            if len(piece.token_ids) < room:
                sent += len(piece.token_ids)
                yield Piece(piece.text, piece.token_ids, piece.logprobs)
                continue
            ids, logprobs = piece.token_ids[:room], piece.logprobs[:room]
            text = await self.inner.detokenize(ids) if ids != piece.token_ids else piece.text
            if self._claim == "stop":
                ids, logprobs = (*ids, self._eos_id), (*logprobs, self._eos_logprob)
            yield Piece(text, ids, logprobs, finish_reason=self._claim, prompt_tokens=prompt_tokens)  # type: ignore[arg-type]
            return


class SlowEngine(_Wrapper):
    """Holds each piece back `delay` seconds: slower than its attestation says."""

    def __init__(self, inner: Engine, *, delay: float) -> None:
        super().__init__(inner)
        self._delay = delay

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        async for piece in self.inner.generate(request):
            await trio.sleep(self._delay * max(1, len(piece.token_ids)))
            yield piece


class LaunderingEngine(_Wrapper):
    """Generates with `cheap` and prices its tokens with the real model's logprobs (one prefill of
    `real` per answer): the logprob comparison passes, the choice of tokens gives it away."""

    def __init__(self, cheap: Engine, real: Engine) -> None:
        super().__init__(cheap)
        self._real = real

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        pieces = [piece async for piece in self.inner.generate(request)]
        ids = [token for piece in pieces for token in piece.token_ids]
        prompt = await self._real.tokenize_chat(request.messages)
        priced = iter([scored.logprob for scored in await self._real.score(prompt, ids)] if ids else [])
        for piece in pieces:
            yield Piece(
                piece.text,
                piece.token_ids,
                tuple(next(priced) for _ in piece.token_ids),
                finish_reason=piece.finish_reason,
                prompt_tokens=piece.prompt_tokens,
            )


class InflatingEngine(_Wrapper):
    """Bills more than it served: `extra_prompt` prompt tokens on top of the real count, and `padding`
    copies of the end-of-sequence token slipped into the answer (they decode to no text, so the text reads
    the same while `tokens_out` grows)."""

    def __init__(self, inner: Engine, *, eos_id: int, extra_prompt: int = 0, padding: int = 0) -> None:
        super().__init__(inner)
        self.loaded = inner.loaded  # type: ignore[attr-defined]
        self._eos = eos_id
        self._extra_prompt = extra_prompt
        self._padding = padding

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:  # type: ignore[override]
        shorter = dataclasses.replace(request, max_tokens=max(1, request.max_tokens - self._padding))
        padding = self._padding
        async for piece in self.inner.generate(shorter):
            if piece.finish_reason is not None:
                piece = dataclasses.replace(piece, prompt_tokens=piece.prompt_tokens + self._extra_prompt)
            if piece.token_ids and padding:
                yield Piece("", (self._eos,) * padding, (0.0,) * padding)
                padding = 0
            yield piece


class SelectiveEngine(_Wrapper):
    """Cheats only on the requests `is_user` picks: those get `substitute`'s answer, every other one (what
    the cheater takes for a validator's challenge) the genuine model's. The worst case for challenges."""

    def __init__(self, inner: Engine, substitute: Engine, is_user: Callable[[GenerationRequest], bool]):
        super().__init__(inner)
        self.substitute = substitute
        self.is_user = is_user

    def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        return (self.substitute if self.is_user(request) else self.inner).generate(request)
