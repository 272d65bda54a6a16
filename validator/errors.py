"""Errors of the validator package: everything it raises on purpose derives from `ValidatorError`."""


class ValidatorError(Exception):
    """Base of every error the validator package raises on purpose."""


class SettlementError(ValidatorError):
    """An epoch cannot be settled from the evidence given (e.g. receipts of unregistered nodes only)."""


class EvidenceError(ValidatorError):
    """Evidence that does not hold together: a forged or mismatched request, receipt, answer or report."""


class ReferenceModelError(ValidatorError):
    """The reference model cannot be loaded or cannot check an answer (too long for it, engine down)."""


class ValidatorConfigError(ValidatorError):
    """A validator setting is unknown, of the wrong type, or out of range."""
