"""monitoring.anomaly: new-error detection, measured on seeded synthetic counts (1,000 trials each).

Exposure: the default 10-minute analysis at 20 requests per second per side, 12,000 requests each.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from monitoring.anomaly import ErrorCount, compare_error_rates, error_increase_p_values

TRIALS = 1000
REQUESTS = 12_000


def alert_rate(current_rate: float, previous_rate: float, seed: int, requests: int = REQUESTS) -> float:
    rng = np.random.default_rng(seed)
    current = rng.binomial(requests, current_rate, TRIALS)
    previous = rng.binomial(requests, previous_rate, TRIALS)
    alerts = sum(
        compare_error_rates(
            ErrorCount(errors=int(c), exposure=requests), ErrorCount(errors=int(p), exposure=requests)
        ).increased
        for c, p in zip(current, previous, strict=True)
    )
    return alerts / TRIALS


def test_power_on_a_doubled_error_rate_is_at_least_95_percent():
    power = alert_rate(0.02, 0.01, seed=11)
    assert power >= 0.95, f"power {power:.1%} on 1 % → 2 % over {REQUESTS} requests"


def test_power_on_a_doubled_error_rate_with_a_tenth_of_the_traffic_is_reported_honestly():
    # 1,200 requests a side: 12 vs 24 errors expected; the test is exact, so it is cautious here.
    power = alert_rate(0.02, 0.01, seed=12, requests=1200)
    assert 0.2 <= power <= 0.8, f"power {power:.1%} (31 % measured)"


def test_false_alarms_on_equal_error_rates_are_at_most_5_percent():
    rate = alert_rate(0.01, 0.01, seed=13)
    assert rate <= 0.05, f"false alarms {rate:.1%} in {TRIALS} trials"


def test_p_values_are_valid_under_equal_rates():
    # P(p <= alpha) <= alpha for the exact conditional test (it is conservative), 100k draws at once.
    rng = np.random.default_rng(14)
    k1, k0 = rng.poisson(30, 100_000), rng.poisson(30, 100_000)
    p = error_increase_p_values(k1, 1.0, k0, 1.0)
    for alpha in (0.01, 0.05, 0.1):
        assert (p <= alpha).mean() <= alpha * 1.05


@given(st.integers(0, 300), st.integers(0, 300), st.floats(1, 1e6), st.floats(1, 1e6))
def test_p_value_is_the_exact_binomial_test(k1, k0, t1, t0):
    p = float(error_increase_p_values(k1, t1, k0, t0))
    if k1 + k0 == 0:
        assert p == 1.0
        return
    expected = binomtest(k1, k1 + k0, t1 / (t1 + t0), alternative="greater").pvalue
    assert math.isclose(p, expected, rel_tol=1e-6, abs_tol=1e-12)


def test_a_new_error_group_alerts_once_it_has_enough_occurrences():
    seven = compare_error_rates(
        ErrorCount(errors=7, exposure=REQUESTS),
        ErrorCount(errors=0, exposure=REQUESTS),
        name="TypeError in checkout",
    )
    assert seven.increased and math.isinf(seven.ratio)
    assert seven.reason == (
        "TypeError in checkout: 7 in 12000 requests (0.0583 %) vs previous version 0 in 12000 requests (0 %), "
        "new, p = 0.008 → alert: significantly higher"
    )
    three = compare_error_rates(
        ErrorCount(errors=3, exposure=REQUESTS), ErrorCount(errors=0, exposure=REQUESTS)
    )
    assert not three.increased and three.reason.endswith("→ no alert (fewer than 5 errors)")


def test_a_significant_but_small_rise_is_not_an_alert():
    change = compare_error_rates(
        ErrorCount(errors=11_500, exposure=1e6), ErrorCount(errors=10_000, exposure=1e6)
    )
    assert change.p_value < 0.001 and not change.increased
    assert change.reason.endswith("1.15×, p < 0.001 → no alert (significant, but below 1.5×)")


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="exposure"):
        compare_error_rates(ErrorCount(errors=1, exposure=0), ErrorCount(errors=1, exposure=1))
