"""Errors of the node package: everything the node raises on purpose derives from `NodeError`."""


class NodeError(Exception):
    """Base of every error the node package raises on purpose."""


class ModelError(NodeError):
    """A model folder is missing, incomplete, or does not match its manifest."""


class ModelSourceMissing(ModelError):
    """A model's source (e.g. a packaged GGUF file) is not installed on this machine."""
