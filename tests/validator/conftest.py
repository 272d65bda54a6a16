"""Fixtures of the validator tests: the tiny model as the reference, as an honest node's engine, and as the
model folder its processes serve and check."""

import pytest

from node.engines.transformers import TransformersEngine
from validator.calibration import thresholds_for
from validator.reference import reference_from_engine


@pytest.fixture(scope="session")
def reference(tiny_model_dir):
    """The tiny model as a validator's reference (scores one prefill at a time)."""
    engine = TransformersEngine.open(tiny_model_dir, max_batch=2)
    yield reference_from_engine(engine)
    engine.close()


@pytest.fixture(scope="session")
def honest_engine(tiny_model_dir):
    """The tiny model in an honest node's batching engine (8 answers at once)."""
    engine = TransformersEngine.open(tiny_model_dir, max_batch=8)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """The tiny model's folder and its model id."""
    from node.models import load_manifest

    return tiny_model_dir, load_manifest(tiny_model_dir).model_id()


@pytest.fixture(scope="session")
def thresholds(reference):
    return thresholds_for(reference.name)
