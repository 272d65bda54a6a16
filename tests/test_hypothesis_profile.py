"""The suite's Hypothesis profile stays in force for every module, whatever was imported before it."""

import brownie  # noqa: F401  (collecting tests/contracts imports it before most other modules)
import pytest
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.unit


def test_the_dolphin_profile_is_the_default_after_brownie_is_imported():
    assert settings._current_profile == "dolphin"
    assert HealthCheck.data_too_large in settings.default.suppress_health_check
    assert settings.default.deadline is None
