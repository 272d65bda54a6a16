"""Suspicion: checks move it by their likelihood ratios, reports raise it, and the sampling rate follows."""

import random

import pytest

from validator.suspicion import Suspicion, SuspicionModel

pytestmark = pytest.mark.unit


def test_starts_at_the_prior_and_moves_by_likelihood_ratios():
    model = SuspicionModel(prior=0.02, detection=0.5, false_positive=0.01)
    suspicion = Suspicion(model)
    assert suspicion.probability == pytest.approx(0.02)
    suspicion.checked(False)  # odds x 50
    odds = 0.02 / 0.98 * 50
    assert suspicion.probability == pytest.approx(odds / (1 + odds))
    suspicion.checked(True)  # odds x 0.5 / 0.99
    odds *= 0.5 / 0.99
    assert suspicion.probability == pytest.approx(odds / (1 + odds))
    assert (suspicion.checks, suspicion.failures) == (2, 1)


def test_a_long_honest_record_keeps_the_node_watchable_and_failures_bring_it_back():
    suspicion = Suspicion(SuspicionModel())
    for _ in range(500):
        suspicion.checked(True)
    assert suspicion.probability == pytest.approx(SuspicionModel().floor)
    assert suspicion.per_hour() >= SuspicionModel().base_per_hour
    for _ in range(3):
        suspicion.checked(False)
    assert suspicion.probability > 0.5


def test_user_reports_raise_suspicion_and_the_sampling_rate():
    suspicion = Suspicion(SuspicionModel())
    before = suspicion.per_hour()
    suspicion.reported()
    assert suspicion.reports == 1 and suspicion.per_hour() > before


def test_delays_follow_the_rate():
    rng = random.Random(3)
    calm, worried = Suspicion(SuspicionModel()), Suspicion(SuspicionModel())
    for _ in range(5):
        worried.checked(False)
    mean = lambda s: sum(s.next_delay(rng) for _ in range(2000)) / 2000  # noqa: E731
    assert mean(worried) < mean(calm) / 5
    assert mean(calm) == pytest.approx(3600 / calm.per_hour(), rel=0.1)


@pytest.mark.parametrize(
    "bad",
    [{"prior": 0}, {"detection": 0.01, "false_positive": 0.02}, {"floor": 0.5}, {"base_per_hour": 0}],
)
def test_nonsense_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        SuspicionModel(**bad)
