"""The validator's gauges follow what they count."""

import pytest

from runtime.lifecycle import InFlight
from validator.metrics import ValidatorMetrics

pytestmark = pytest.mark.unit


def _value(metrics: ValidatorMetrics, name: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not exported")


def test_challenges_in_flight_rise_and_fall_with_the_challenges():
    metrics = ValidatorMetrics()
    in_flight = InFlight(metrics.in_flight.set)
    in_flight.start()
    in_flight.start()
    assert _value(metrics, "dolphin_validator_challenges_in_flight") == 2
    in_flight.end()
    in_flight.end()
    assert _value(metrics, "dolphin_validator_challenges_in_flight") == 0
