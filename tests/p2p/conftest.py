"""Shared fixtures for the p2p tests: quiet py-libp2p logs (it logs remote misbehaviour as warnings)."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_libp2p():
    logger = logging.getLogger("libp2p")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
