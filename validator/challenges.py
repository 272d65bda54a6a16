"""Sampled requests: what a validator asks a node, drawn so that it reads like any client's request.

A challenge is an ordinary chat request (`pool.client.complete`), sent from a short-lived light-client host
signing with its own key (`sampler`), so the node sees what it sees from the project's own clients. Its
sampling settings are drawn from what those clients send: `dolphin ask`'s defaults (greedy, up to 256
tokens, no seed, no stop), the gateway's OpenAI defaults (temperature 1, top_p 1, the caller's length),
and settings users choose (a spread of temperatures, nucleus sampling, seeds, lengths, stop strings).
Its prompt comes from the operator's own private prompt file when there is one (`load_prompts`:
public text is text a node can learn to match), else from the built-in generator of chats
(`prompts.GENERATED`, millions of combinations of public parts). Answers are kept
short enough (`MAX_CHALLENGE_TOKENS`) for their evidence to fit one gossip message.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from validator.errors import ValidatorConfigError
from validator.prompts import GENERATED, Chat

__all__ = ["MAX_CHALLENGE_TOKENS", "Challenge", "draw_challenge", "load_prompts"]

MAX_CHALLENGE_TOKENS = 256

# Which client a challenge reads like: `dolphin ask` left at its defaults, an OpenAI client of the gateway
# left at its defaults, or a user's own settings (the spreads below).
_PROFILES = ((40, "ask"), (30, "gateway"), (30, "custom"))
# (weight, value) spreads of the sampling settings users choose.
_TEMPERATURES = ((35, 0.0), (35, 0.7), (30, 1.0))
_TOP_PS = ((60, 1.0), (25, 0.95), (15, 0.9))
_LENGTHS = ((20, 32), (35, 64), (30, 128), (15, 256))
_STOPS: tuple[tuple[int, tuple[str, ...]], ...] = ((85, ()), (10, ("\n\n",)), (5, ("###",)))
_SEEDED = 0.5  # of sampled requests
_V = TypeVar("_V")


@dataclass(frozen=True)
class Challenge:
    """One sampled request: the chat, and how to sample its answer (`temperature` 0 is greedy)."""

    kind: str
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _pick(rng: random.Random, spread: tuple[tuple[int, _V], ...]) -> _V:
    weights, values = zip(*spread, strict=True)
    return rng.choices(values, weights=weights)[0]


def draw_challenge(
    rng: random.Random,
    *,
    max_tokens: int = MAX_CHALLENGE_TOKENS,
    prompts: Sequence[tuple[str, Chat]] = GENERATED,
) -> Challenge:
    """A challenge drawn from `prompts` and the clients' settings (module docstring), at most
    `max_tokens` long.

    Use an unpredictable `rng` (random.SystemRandom) in production: a node that could predict the draws
    could answer challenges honestly and cheat everyone else.
    """
    kind, messages = rng.choice(prompts)
    profile = _pick(rng, _PROFILES)
    if profile == "ask":
        return Challenge(kind=kind, messages=messages, max_tokens=min(256, max_tokens))
    if profile == "gateway":
        length = int(_pick(rng, _LENGTHS)) if rng.random() < 0.5 else 256
        return Challenge(kind=kind, messages=messages, max_tokens=min(length, max_tokens), temperature=1.0)
    temperature = float(_pick(rng, _TEMPERATURES))
    sampled = temperature > 0
    return Challenge(
        kind=kind,
        messages=messages,
        max_tokens=min(int(_pick(rng, _LENGTHS)), max_tokens),
        temperature=temperature,
        top_p=float(_pick(rng, _TOP_PS)) if sampled else 1.0,
        seed=rng.randrange(1 << 63) if sampled and rng.random() < _SEEDED else None,
        stop=_pick(rng, _STOPS),
    )


def load_prompts(path: Path) -> tuple[tuple[str, Chat], ...]:
    """An operator's private prompts: one JSON chat a line, a list of [role, content] pairs (roles
    system, user, assistant). ValidatorConfigError when the file is unreadable or a line is not a chat."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValidatorConfigError(f"cannot read the challenge prompts {path}: {exc}") from exc
    prompts: list[tuple[str, Chat]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            chat = tuple((str(role), str(content)) for role, content in json.loads(line))
        except (ValueError, TypeError) as exc:
            raise ValidatorConfigError(f"{path}:{number} is not a chat of [role, content] pairs") from exc
        if (
            not chat
            or chat[-1][0] != "user"
            or any(r not in ("system", "user", "assistant") for r, _ in chat)
        ):
            raise ValidatorConfigError(
                f"{path}:{number}: a chat ends with a user message; roles are system, user, assistant"
            )
        prompts.append(("operator", chat))
    if not prompts:
        raise ValidatorConfigError(f"{path} holds no prompts")
    return tuple(prompts)
