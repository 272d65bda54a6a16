"""Fixtures of the node tests: one in-process engine on the tiny model, shared by every node test."""

import pytest

from node.engines.transformers import TransformersEngine


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    """The tiny model in a batching engine (8 answers at once). Tests leave it idle when they end."""
    engine = TransformersEngine.open(tiny_model_dir, max_batch=8)
    yield engine
    engine.close()
