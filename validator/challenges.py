"""Sampled requests: what a validator asks a node, drawn so that it reads like any client's request.

A challenge is an ordinary chat request (`pool.client.complete`), sent with a fresh session key from a
short-lived light-client host, so the node sees nothing it does not see from other clients: a prompt from
a varied mix (`prompts`), and sampling settings drawn from a realistic spread — greedy and sampled, with
and without a seed, with and without nucleus sampling, different lengths, now and then a stop string.
Answers are kept short enough (`MAX_CHALLENGE_TOKENS`) for their evidence to fit one gossip message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from validator.prompts import PROMPTS

__all__ = ["MAX_CHALLENGE_TOKENS", "Challenge", "draw_challenge"]

MAX_CHALLENGE_TOKENS = 256

# (weight, value) spreads of the sampling settings.
_TEMPERATURES = ((35, 0.0), (35, 0.7), (30, 1.0))
_TOP_PS = ((60, 1.0), (25, 0.95), (15, 0.9))
_LENGTHS = ((20, 32), (35, 64), (30, 128), (15, 256))
_STOPS = ((85, ()), (10, ("\n\n",)), (5, ("###",)))
_SEEDED = 0.5  # of sampled requests


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


def _pick(rng: random.Random, spread: tuple[tuple[int, object], ...]) -> object:
    weights, values = zip(*spread, strict=True)
    return rng.choices(values, weights=weights)[0]


def draw_challenge(rng: random.Random, *, max_tokens: int = MAX_CHALLENGE_TOKENS) -> Challenge:
    """A challenge drawn from the prompt set and the settings' spreads, at most `max_tokens` long.

    Use an unpredictable `rng` (random.SystemRandom) in production: a node that could predict the draws
    could answer challenges honestly and cheat everyone else.
    """
    kind, messages = rng.choice(PROMPTS)
    temperature = float(_pick(rng, _TEMPERATURES))  # type: ignore[arg-type]
    sampled = temperature > 0
    return Challenge(
        kind=kind,
        messages=messages,
        max_tokens=min(int(_pick(rng, _LENGTHS)), max_tokens),  # type: ignore[call-overload]
        temperature=temperature,
        top_p=float(_pick(rng, _TOP_PS)) if sampled else 1.0,  # type: ignore[arg-type]
        seed=rng.randrange(1 << 63) if sampled and rng.random() < _SEEDED else None,
        stop=_pick(rng, _STOPS),  # type: ignore[arg-type]
    )
