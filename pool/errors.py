"""Errors of the pool package: everything it raises on purpose derives from `PoolError`."""


class PoolError(Exception):
    """Base of every error the pool package raises on purpose."""


class InferenceFailed(PoolError):
    """A node could not be reached, refused the request, or its answer failed a check."""
