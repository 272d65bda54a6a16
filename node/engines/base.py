"""The engine interface (trio-async): what the node's inference service and validators ask of a model.

An engine serves one model. It generates many answers at once (the service never serialises requests
itself), streams each as pieces carrying token ids and the log-probability of every chosen token, and can
score a given continuation: one teacher-forced prefill over prompt + output that returns, for each output
token, its log-probability and rank under this model (validators compare a node's answer with that).

Everything is in token ids of the engine's own tokenizer, so two engines serving the same model folder
(in-process transformers, vLLM over HTTP) give the same ids for the same text.

Rules every engine keeps:
- `generate` is an async iterator; leaving it early (`aclose()`, cancellation, the client went away) stops
  the generation at its next token and frees its slot, never finishing the answer for nobody.
- Greedy generation (temperature 0) is deterministic for a given engine configuration.
- An answer that ends on the end-of-sequence token includes that token's id in its last piece (its text is
  empty), as vLLM reports it: validators check where an answer stopped by scoring that token too.
- A chat whose last message has role "assistant" is continued, not answered: its content is the prefix of
  the answer (failover resumes an answer on another node this way).
- Errors are `EngineError`s; a request the engine cannot take (too long, bad parameters) is
  `EngineRequestError` and says why; an engine that is down is `EngineUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast, runtime_checkable

from node.errors import NodeError

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

FinishReason = Literal["stop", "length", "cancelled", "error"]


class EngineError(NodeError):
    """An engine failed to generate, tokenize or score."""


class EngineRequestError(EngineError):
    """The request cannot be served as asked (prompt too long, unsupported parameters)."""


class EngineUnavailable(EngineError):
    """The engine is not running or not answering (a vLLM server that died or is still loading)."""


Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


def chat_turns(messages: Iterable[tuple[str, str]]) -> tuple[ChatTurn, ...]:
    """Turns from (role, content) pairs whose roles were checked where they came in (the ChatMessage
    schema, the local API's parser): a role is one of ChatTurn's."""
    return tuple(ChatTurn(cast(Role, role), content) for role, content in messages)


class Priority:
    """Queue priorities: lower runs first. The operator's own local API goes ahead of network requests."""

    LOCAL = 0
    NETWORK = 10


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One answer to generate. `messages` go through the model's chat template (a trailing assistant turn
    is continued); `prompt_ids`, when given instead, are used as they are (completions API, validators)."""

    messages: tuple[ChatTurn, ...] = ()
    prompt_ids: tuple[int, ...] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0  # how many alternatives per position to return beside the chosen token
    priority: int = Priority.NETWORK
    ignore_eos: bool = False  # generate past end-of-sequence up to max_tokens: answers of a known length

    def __post_init__(self) -> None:
        if (self.prompt_ids is None) == (not self.messages):
            raise EngineRequestError("a generation request needs either messages or prompt_ids, not both")
        if self.max_tokens < 1:
            raise EngineRequestError("max_tokens must be at least 1")


@dataclass(frozen=True, slots=True)
class Piece:
    """A step of a streamed answer. `text` is the new text (never a broken UTF-8 sequence: held back until
    complete); `token_ids` the tokens it came from, `logprobs` one natural-log probability per token id
    under the sampling distribution's model logits; `top_logprobs` per token id, (token id, logprob) pairs
    best first when asked for. The last piece of an answer has `finish_reason` set (and may carry no
    tokens); `prompt_tokens` is set on it too."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    top_logprobs: tuple[tuple[tuple[int, float], ...], ...] = ()
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ScoredToken:
    """One output position under teacher forcing: the token's logprob, its rank among the vocabulary (1 is
    the most likely token) and the best alternatives there."""

    token_id: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """How busy the engine is, for heartbeats, routing and metrics."""

    running: int  # answers being generated now
    waiting: int  # requests queued for a slot
    capacity: int  # answers it generates at once at full speed
    healthy: bool = True
    detail: dict = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """An engine serving one model folder; see the module docstring for the rules."""

    name: str  # "transformers", "vllm"
    version: str  # the engine software's version, as attested in benchmarks

    async def tokenize_chat(self, messages: Sequence[ChatTurn]) -> list[int]:
        """The prompt ids `generate` would use for `messages` (chat template applied)."""
        ...

    async def tokenize(self, text: str) -> list[int]:
        """Plain text to ids, no special tokens added."""
        ...

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        """Ids to text, special tokens skipped."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        """Stream the answer; see `Piece`. Raises EngineError (EngineRequestError for bad requests)."""
        ...

    async def score(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], *, top: int = 0
    ) -> list[ScoredToken]:
        """Teacher-forced logprobs and ranks of `output_ids` after `prompt_ids`, one prefill."""
        ...

    def load(self) -> EngineLoad:
        """How busy it is right now (cheap, no I/O)."""
        ...

    async def aclose(self) -> None:
        """Stop generating and release the model (and a supervised server)."""
        ...
