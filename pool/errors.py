"""Errors of the pool package: everything it raises on purpose derives from `PoolError`.

One node's attempt fails with `InferenceFailed` (or `AnswerFailedCheck`, when what the node sent broke a
rule); the light client turns failed attempts into another node's attempt, and raises only when there is
nobody to ask (`NoNodeAvailable`) or every attempt it may make failed (`AllAttemptsFailed`, or
`AnswerFailedCheck` when each of them failed a check).
"""

from __future__ import annotations


class PoolError(Exception):
    """Base of every error the pool package raises on purpose."""


class InferenceFailed(PoolError):
    """A node could not be reached, refused the request, stalled, or went away while answering.

    `reason` is a short code for metrics and the router (unreachable, refused, stalled, lost, check);
    `hard` says whether the node itself looks broken (a refusal because it is busy is not)."""

    def __init__(self, message: str, *, reason: str = "lost", hard: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.hard = hard


class AnswerFailedCheck(InferenceFailed):
    """The answer failed a check: a frame out of order or forged, more tokens than asked for, a receipt
    that does not match what arrived. `attempts` holds every failed attempt when the light client gives up."""

    def __init__(self, message: str, *, attempts: list[InferenceFailed] | None = None) -> None:
        super().__init__(message, reason="check", hard=True)
        self.attempts = attempts or []


class NoNodeAvailable(PoolError):
    """No node serves this model (or none that the request's preferences allow)."""


class AllAttemptsFailed(PoolError):
    """Every attempt the light client may make failed; `attempts` says how, in order."""

    def __init__(self, message: str, attempts: list[InferenceFailed]) -> None:
        super().__init__(message)
        self.attempts = attempts


class UnknownModel(PoolError):
    """A model name that no pool in the network goes by, or a malformed model id."""


class TreeUnavailable(PoolError):
    """No validator peer served the rewards tree asked for, with the root the chain has for it."""


class TokenizerUnavailable(PoolError):
    """No pool member served a model's manifest and tokenizer files whole and matching the model id."""
