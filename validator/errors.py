"""Errors of the validator package: everything it raises on purpose derives from `ValidatorError`."""


class ValidatorError(Exception):
    """Base of every error the validator package raises on purpose."""


class SettlementError(ValidatorError):
    """An epoch cannot be settled from the evidence given (e.g. receipts of unregistered nodes only)."""
