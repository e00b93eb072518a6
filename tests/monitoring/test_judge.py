"""monitoring.judge: pure statistics, no Django.  Power and false alarms are measured on seeded synthetic data.

The error-rate model: every 10-second sample is errors / requests of that interval, errors binomial in
200 requests (a canary and a baseline each taking 20 requests per second), DEFAULT_SAMPLES (60) samples
per side: the default 10-minute analysis.  The baseline fails 1 % of requests, a regressed canary 2 %.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtri
from scipy.stats import mannwhitneyu, rankdata

from monitoring.judge import (
    DEFAULT_SAMPLES,
    CanaryVerdict,
    Classification,
    Direction,
    Grade,
    JudgeConfig,
    MetricData,
    MetricSpec,
    NanStrategy,
    _difference_order_statistics,
    judge_canary,
    shift_test,
    validate_spec,
)

TRIALS = 1000
REQUESTS_PER_SAMPLE = 200  # 20 requests/s per side, sampled every 10 s


def error_ratios(rng: np.random.Generator, rate: float, trials: int = TRIALS) -> np.ndarray:
    """trials × DEFAULT_SAMPLES per-interval error ratios."""
    return rng.binomial(REQUESTS_PER_SAMPLE, rate, size=(trials, DEFAULT_SAMPLES)) / REQUESTS_PER_SAMPLE


def verdict(canary, baseline, *, config: JudgeConfig | None = None, **spec) -> CanaryVerdict:
    spec.setdefault("name", "error_rate")
    return judge_canary([MetricData(spec=MetricSpec(**spec), canary=canary, baseline=baseline)], config)


def alarm_rate(canaries: np.ndarray, baselines: np.ndarray, **spec) -> float:
    alarms = sum(verdict(c, b, **spec).grade != Grade.PASS for c, b in zip(canaries, baselines, strict=True))
    return alarms / len(canaries)


def test_importing_the_judge_does_not_import_django():
    code = (
        "import sys, monitoring.judge, monitoring.anomaly, monitoring.expressions; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- power and false alarms


def test_power_on_a_doubled_error_rate_is_at_least_95_percent():
    rng = np.random.default_rng(20260101)
    power = alarm_rate(
        error_ratios(rng, 0.02), error_ratios(rng, 0.01), direction=Direction.INCREASE, unit="%"
    )
    assert power >= 0.95, (
        f"power {power:.1%} on 1 % → 2 % errors, {DEFAULT_SAMPLES} samples of {REQUESTS_PER_SAMPLE}"
    )


def test_power_when_either_direction_is_bad_is_still_at_least_95_percent():
    rng = np.random.default_rng(20260102)
    power = alarm_rate(error_ratios(rng, 0.02), error_ratios(rng, 0.01), direction=Direction.EITHER, unit="%")
    assert power >= 0.95, f"power {power:.1%}"


def test_false_alarms_on_identical_error_rates_are_at_most_5_percent():
    rng = np.random.default_rng(20260103)
    rate = alarm_rate(error_ratios(rng, 0.01), error_ratios(rng, 0.01), direction=Direction.EITHER, unit="%")
    assert rate <= 0.05, f"false alarms {rate:.1%} in {TRIALS} trials"


def test_false_alarms_on_identical_latencies_are_at_most_5_percent():
    rng = np.random.default_rng(20260104)
    canaries = rng.lognormal(5, 0.6, size=(TRIALS, DEFAULT_SAMPLES))
    baselines = rng.lognormal(5, 0.6, size=(TRIALS, DEFAULT_SAMPLES))
    rate = alarm_rate(canaries, baselines, name="latency_p95", unit="ms")
    assert rate <= 0.05, f"false alarms {rate:.1%} in {TRIALS} trials"


def test_false_alarms_with_a_thousand_samples_are_at_most_5_percent():
    rng = np.random.default_rng(20260105)
    canaries = rng.gamma(2.0, 50.0, size=(TRIALS, 1000))
    baselines = rng.gamma(2.0, 50.0, size=(TRIALS, 1000))
    rate = alarm_rate(canaries, baselines, name="latency", unit="ms")
    assert rate <= 0.05, f"false alarms {rate:.1%} in {TRIALS} trials"


def test_the_two_sided_98_percent_interval_misses_zero_about_2_percent_of_the_time():
    # Without the effect-size tolerance the test alone has its nominal size.
    rng = np.random.default_rng(20260106)
    x, y = rng.normal(size=(TRIALS, DEFAULT_SAMPLES)), rng.normal(size=(TRIALS, DEFAULT_SAMPLES))
    misses = sum(not (t.low <= 0 <= t.high) for t in (shift_test(a, b) for a, b in zip(x, y, strict=True)))
    assert 0.005 <= misses / TRIALS <= 0.035, f"{misses} of {TRIALS}"


# --------------------------------------------------------------------------- the statistics are Kayenta's


def brute_order_statistics(x, y, ranks):
    return np.sort(np.subtract.outer(x, y).ravel())[np.asarray(ranks) - 1]


samples = st.tuples(
    st.integers(0, 2**32 - 1),
    st.integers(1, 600),
    st.integers(1, 600),
    st.sampled_from(["normal", "counts", "rounded", "constant-ish"]),
)


def draw(seed: int, m: int, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=m), rng.normal(0.2, 1.5, size=n)
    if kind == "counts":
        return rng.binomial(200, 0.02, size=m) / 200, rng.binomial(200, 0.01, size=n) / 200
    if kind == "rounded":
        return rng.lognormal(size=m).round(2), rng.lognormal(size=n).round(2)
    return rng.choice([1.0, 1.0, 1.0, 2.5], size=m), rng.choice([1.0, 3.0], size=n)


@settings(max_examples=60, deadline=None)
@given(samples, st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_order_statistics_of_differences_are_exact(sample, fractions):
    x, y = (np.sort(a) for a in draw(*sample))
    total = x.size * y.size
    ranks = np.unique([min(total, 1 + int(f * total)) for f in fractions])
    assert np.array_equal(_difference_order_statistics(x, y, ranks), brute_order_statistics(x, y, ranks))


def test_order_statistics_of_a_million_continuous_differences_are_exact():
    rng = np.random.default_rng(7)
    x, y = np.sort(rng.lognormal(5, 1, 1000)), np.sort(rng.lognormal(5.1, 1, 1000))
    ranks = np.array([1, 470_000, 500_000, 500_001, 530_000, 1_000_000])
    assert np.array_equal(_difference_order_statistics(x, y, ranks), brute_order_statistics(x, y, ranks))


@settings(max_examples=60, deadline=None)
@given(samples)
def test_p_value_is_scipys_mann_whitney(sample):
    x, y = draw(*sample)
    if x.size + y.size < 3 or np.unique(np.concatenate([x, y])).size == 1:
        return
    expected = mannwhitneyu(x, y, method="asymptotic").pvalue
    assert math.isclose(shift_test(x, y).p_value, expected, rel_tol=1e-9, abs_tol=1e-15)


def kayenta_bound(x, y, zq, confidence=0.98):
    """Kayenta's MannWhitney.calculateConfidenceInterval, by bisection instead of Brent: the reference."""

    def wilcoxon_diff(mu):
        ranks = rankdata(np.concatenate([x - mu, y]))
        m, n = x.size, y.size
        dz = ranks[:m].sum() - m * (m + 1) / 2 - m * n / 2
        _, ties = np.unique(ranks, return_counts=True)
        sigma = math.sqrt(m * n / 12 * ((m + n + 1) - np.sum(ties**3 - ties) / ((m + n) * (m + n - 1))))
        return (dz - np.sign(dz) * 0.5) / sigma - zq

    lo, hi = x.min() - y.max(), x.max() - y.min()
    if wilcoxon_diff(lo) <= 0:
        return lo
    if wilcoxon_diff(hi) >= 0:
        return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if wilcoxon_diff(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(5, 40),
    st.integers(5, 40),
    st.sampled_from(["normal", "counts", "rounded"]),
)
def test_interval_is_kayentas_root_of_the_wilcoxon_statistic(seed, m, n, kind):
    x, y = draw(seed, m, n, kind)
    if np.unique(x).size == 1 and np.unique(y).size == 1:
        return
    z = float(ndtri(1 - 0.02 / 2))
    test = shift_test(x, y)
    assert math.isclose(test.low, kayenta_bound(x, y, z), abs_tol=1e-9)
    assert math.isclose(test.high, kayenta_bound(x, y, -z), abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(samples)
def test_hodges_lehmann_estimate_is_the_median_difference_inside_the_interval(sample):
    x, y = draw(*sample)
    test = shift_test(x, y)
    assert test.estimate == pytest.approx(float(np.median(np.subtract.outer(x, y))), abs=1e-12)
    assert test.low <= test.estimate <= test.high


@settings(max_examples=40, deadline=None)
@given(samples)
def test_swapping_canary_and_baseline_swaps_high_and_low(sample):
    x, y = draw(*sample)
    x, y = np.resize(x, max(x.size, 10)), np.resize(y, max(y.size, 10))
    forward = verdict(x, y).metrics[0].classification
    backward = verdict(y, x).metrics[0].classification
    swap = {Classification.HIGH: Classification.LOW, Classification.LOW: Classification.HIGH}
    assert backward == swap.get(forward, forward)


@settings(max_examples=40, deadline=None)
@given(samples)
def test_a_tolerance_only_ever_removes_alarms(sample):
    x, y = draw(*sample)
    x, y = np.resize(x, max(x.size, 10)), np.resize(y, max(y.size, 10))
    strict = verdict(x, y, config=JudgeConfig(tolerance=0)).metrics[0].classification
    tolerant = verdict(x, y).metrics[0].classification
    assert tolerant == Classification.PASS or tolerant == strict


def test_a_significant_shift_within_the_hodges_lehmann_tolerance_passes_and_fails_without_it():
    """Kayenta's effect-size tolerance, deterministically: latencies 4 ms higher on evenly spread samples. The 98 %
    interval (+0.41 to +7.59 ms) excludes 0 (p = 0.009: significant), but its lower end is within 0.25 × the
    Hodges-Lehmann estimate (+1 ms): a pass, saying why. With no tolerance the same data is too high."""
    baseline = np.linspace(100, 120, 40)
    canary = baseline + 4
    spec = {"name": "latency", "direction": Direction.INCREASE, "unit": "ms"}
    tolerant = verdict(canary, baseline, **spec)
    metric = tolerant.metrics[0]
    assert metric.test.estimate == pytest.approx(4.0)
    assert 0 < metric.test.low <= 0.25 * metric.test.estimate and metric.test.p_value < 0.02
    assert (tolerant.grade, metric.classification) == (Grade.PASS, Classification.PASS)
    assert metric.reason == (
        "latency: canary 114 ms vs baseline 110 ms (1.04×), shift +4 ms [98 % interval +0.41 ms to +7.59 ms], "
        "p = 0.009 → pass (a shift within the 25 % tolerance)"
    )
    strict = verdict(canary, baseline, config=JudgeConfig(tolerance=0), **spec)
    assert (strict.grade, strict.metrics[0].classification) == (Grade.FAIL, Classification.HIGH)
    assert strict.metrics[0].reason.endswith("→ too high: fail")
    assert verdict(baseline + 5, baseline, **spec).metrics[0].classification == Classification.HIGH  # past it


# --------------------------------------------------------------------------- classification rules


def regression(rng=None, size=DEFAULT_SAMPLES):
    rng = rng or np.random.default_rng(1)
    return rng.binomial(1000, 0.048, size) / 1000, rng.binomial(1000, 0.009, size) / 1000


def test_a_regression_reads_as_a_sentence():
    canary, baseline = regression()
    result = verdict(canary, baseline, direction=Direction.INCREASE, unit="%")
    metric = result.metrics[0]
    assert metric.classification == Classification.HIGH
    assert metric.reason == (
        "error_rate: canary 4.77 % vs baseline 0.9 % (5.30×), shift +3.9 % "
        "[98 % interval +3.7 % to +4.1 %], p < 0.001 → too high: fail"
    )
    assert result.grade == Grade.FAIL and result.score == 0
    assert (
        result.reason == "fail: score 0 (0 of 1 metrics pass; failing: error_rate; pass ≥ 95, marginal ≥ 75)"
    )
    assert result.reasons == (result.reason, metric.reason)


def test_a_drop_in_errors_passes_when_only_an_increase_is_bad():
    canary, baseline = regression()
    metric = verdict(baseline, canary, direction=Direction.INCREASE).metrics[0]
    assert metric.classification == Classification.PASS
    assert "→ pass (lower, which is fine for this metric)" in metric.reason
    assert (
        verdict(baseline, canary, direction=Direction.EITHER).metrics[0].classification == Classification.LOW
    )


def test_allowed_increase_tolerates_a_bounded_ratio():
    canary, baseline = regression()  # about 5×
    assert verdict(canary, baseline, allowed_increase=6).metrics[0].classification == Classification.PASS
    assert "within the allowed ratio 6×" in verdict(canary, baseline, allowed_increase=6).metrics[0].reason
    assert verdict(canary, baseline, allowed_increase=4).metrics[0].classification == Classification.HIGH


def test_a_critical_metric_that_is_too_high_fails_the_whole_run():
    canary, baseline = regression()
    same = np.linspace(100, 200, DEFAULT_SAMPLES)
    metrics = [
        MetricData(spec=MetricSpec(name="error_rate", critical=True), canary=canary, baseline=baseline)
    ]
    metrics += [MetricData(spec=MetricSpec(name=f"m{i}"), canary=same, baseline=same) for i in range(30)]
    result = judge_canary(metrics)
    assert result.metrics[0].fails_run
    assert (result.grade, result.score) == (Grade.FAIL, 0.0)
    assert result.reason == "fail: critical metric error_rate failed (score 0)"


def test_critical_increase_sets_how_much_worse_a_critical_metric_may_get_before_failing_the_run():
    canary, baseline = regression()
    result = verdict(canary, baseline, critical=True, critical_increase=10)
    assert result.metrics[0].classification == Classification.HIGH and not result.metrics[0].fails_run
    assert result.score == 0 and result.reason.startswith("fail: score 0")


def test_too_few_samples_is_no_data_and_half_without_data_fails():
    same = np.arange(20.0)
    metrics = [
        MetricData(spec=MetricSpec(name="a"), canary=same, baseline=same),
        MetricData(spec=MetricSpec(name="b"), canary=same[:9], baseline=same),
    ]
    result = judge_canary(metrics)
    assert result.metrics[1].classification == Classification.NODATA
    assert result.metrics[1].reason == "b: 9 canary and 20 baseline samples, fewer than 10 → no data"
    assert (result.grade, result.score) == (Grade.FAIL, 0.0)
    assert result.reason == "fail: 1 of 2 metrics have no data (≥ 50 %, score 0)"
    metrics.append(MetricData(spec=MetricSpec(name="c"), canary=same, baseline=same))
    assert judge_canary(metrics).grade == Grade.PASS  # 1 of 3: not scored, the rest pass


def test_nan_samples_are_removed_or_counted_as_zero():
    values = np.r_[np.full(12, np.nan), np.arange(5.0)]
    removed = verdict(values, np.arange(20.0)).metrics[0]
    assert removed.classification == Classification.NODATA and removed.canary.count == 5
    replaced = verdict(values, np.arange(20.0), nan_strategy=NanStrategy.REPLACE).metrics[0]
    assert replaced.canary.count == 17 and replaced.test is not None
    empty = verdict([], np.arange(20.0), nan_strategy=NanStrategy.REPLACE).metrics[0]
    assert empty.classification == Classification.PASS  # Kayenta: no data under "replace" passes


def test_required_data_missing_counts_as_a_failing_metric_and_critical_data_missing_fails_the_run():
    same = np.arange(20.0)
    ok = [MetricData(spec=MetricSpec(name=f"ok{i}"), canary=same, baseline=same) for i in range(3)]
    required = MetricData(spec=MetricSpec(name="req", must_have_data=True), canary=[], baseline=same)
    result = judge_canary([*ok, required])
    assert result.metrics[-1].classification == Classification.NODATA_FAIL
    assert (result.score, result.grade) == (75.0, Grade.MARGINAL)
    critical = MetricData(spec=MetricSpec(name="crit", critical=True), canary=[], baseline=same)
    assert judge_canary([*ok, critical]).reason == "fail: critical metric crit failed (score 0)"


def test_identical_and_constant_samples_pass_and_constant_but_different_samples_are_exact():
    assert "identical samples → pass" in verdict(np.arange(12.0), np.arange(12.0)[::-1]).metrics[0].reason
    assert "a single value throughout" in verdict(np.ones(12), np.ones(15)).metrics[0].reason
    metric = verdict(np.full(12, 3.0), np.ones(15)).metrics[0]
    assert metric.classification == Classification.HIGH
    assert (metric.test.low, metric.test.estimate, metric.test.high) == (2.0, 2.0, 2.0)


def test_score_is_the_weighted_share_of_passing_metrics_per_group_weighted_across_groups():
    same, low, high = np.arange(20.0), np.ones(12), np.full(12, 5.0)
    passing = {"canary": same, "baseline": same}
    failing = {"canary": high, "baseline": low}
    metrics = [
        MetricData(spec=MetricSpec(name="errors", groups=("errors",), weight=3), **failing),
        MetricData(spec=MetricSpec(name="5xx", groups=("errors",)), **passing),
        MetricData(spec=MetricSpec(name="p50", groups=("latency",)), **passing),
        MetricData(spec=MetricSpec(name="p99", groups=("latency",)), **passing),
        MetricData(spec=MetricSpec(name="cpu", groups=("saturation",)), canary=[], baseline=same),
        MetricData(spec=MetricSpec(name="muted", groups=("latency",), muted=True), **failing),
    ]
    result = judge_canary(metrics, JudgeConfig(group_weights={"errors": 50}))
    scores = {g.name: (g.score, g.no_data) for g in result.groups}
    assert scores == {"errors": (25.0, False), "latency": (100.0, False), "saturation": (0.0, True)}
    # errors 25 × 50 % + latency 100 × 25 % + saturation (no data counts as 100) × 25 %
    assert result.score == 62.5 and result.grade == Grade.FAIL
    assert result.metrics[-1].classification == Classification.HIGH  # reported, not scored


@pytest.mark.parametrize(
    ("passing", "grade"), [(19, Grade.PASS), (18, Grade.MARGINAL), (15, Grade.MARGINAL), (14, Grade.FAIL)]
)
def test_grades_follow_the_pass_and_marginal_thresholds(passing, grade):
    same, low, high = np.arange(20.0), np.ones(12), np.full(12, 5.0)
    metrics = [
        MetricData(
            spec=MetricSpec(name=f"m{i}"),
            canary=same if i < passing else high,
            baseline=same if i < passing else low,
        )
        for i in range(20)
    ]
    assert judge_canary(metrics).grade == grade


def test_nothing_to_judge_fails():
    assert judge_canary([]).reason == "fail: no metric to judge (score 0)"
    muted = MetricData(
        spec=MetricSpec(name="m", muted=True), canary=np.arange(20.0), baseline=np.arange(20.0)
    )
    assert judge_canary([muted]).grade == Grade.FAIL


def test_bad_configuration_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="confidence"):
        judge_canary([], JudgeConfig(confidence=1.5))
    with pytest.raises(ValueError, match="group_weights"):
        judge_canary([], JudgeConfig(group_weights={"a": 80, "b": 30}))
    with pytest.raises(ValueError, match="allowed_increase"):
        validate_spec(MetricSpec(name="x", allowed_increase=-1))
    with pytest.raises(ValueError, match="direction"):
        validate_spec(MetricSpec(name="x", direction="sideways"))


def test_twenty_metrics_of_a_thousand_samples_are_judged_quickly():
    rng = np.random.default_rng(3)
    metrics = [
        MetricData(
            spec=MetricSpec(name=f"m{i}"),
            canary=rng.lognormal(5, 1, 1000),
            baseline=rng.lognormal(5, 1, 1000),
        )
        for i in range(20)
    ]
    judge_canary(metrics)
    import time

    started = time.perf_counter()
    judge_canary(metrics)
    assert time.perf_counter() - started < 0.5  # the goal is 50 ms (make bench); generous on a busy CI


# --------------------------------------------------------------------------- threshold checks (Argo Rollouts)

from monitoring.expressions import ExpressionInvalid  # noqa: E402
from monitoring.judge import (  # noqa: E402
    CheckPhase,
    Measurement,
    ThresholdCheck,
    assess_check,
    assess_checks,
    validate_check,
)


def rates(*values, error_at=()):
    return [
        Measurement(error="timeout") if i in error_at else Measurement(values={"error_rate": v})
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase"),
    [
        ("error_rate < 0.01", "", 0.005, CheckPhase.SUCCESSFUL),
        ("error_rate < 0.01", "", 0.02, CheckPhase.FAILED),  # only a success condition: not holding fails
        (
            "",
            "error_rate >= 0.05",
            0.02,
            CheckPhase.SUCCESSFUL,
        ),  # only a failure condition: not holding succeeds
        ("", "error_rate >= 0.05", 0.06, CheckPhase.FAILED),
        ("error_rate < 0.01", "error_rate >= 0.05", 0.02, CheckPhase.INCONCLUSIVE),  # neither holds
        ("error_rate < 0.01", "error_rate >= 0.0", 0.005, CheckPhase.FAILED),  # failure wins
        ("", "", 0.9, CheckPhase.SUCCESSFUL),  # no condition
        ("error_rate < 0.01", "", math.nan, CheckPhase.FAILED),  # NaN compares false
    ],
)
def test_each_measurement_is_judged_like_argo(success, failure, value, phase):
    check = ThresholdCheck(name="errors", success_condition=success, failure_condition=failure, count=1)
    result = assess_check(check, rates(value))
    assert result.measurements[0].phase == phase


def test_a_measurement_reads_as_a_sentence():
    check = ThresholdCheck(name="errors", success_condition="error_rate < 0.01", count=5)
    result = assess_check(check, rates(0.004, 0.02))
    assert result.measurements[0].reason == "error_rate = 0.004: `error_rate < 0.01` holds → successful"
    assert result.measurements[1].reason == "error_rate = 0.02: `error_rate < 0.01` does not hold → failed"
    assert result.phase == CheckPhase.FAILED
    assert result.reason == (
        "errors: 1 failed measurement, more than the failure limit 0 → failed; "
        "last: error_rate = 0.02: `error_rate < 0.01` does not hold → failed"
    )


def test_failures_up_to_the_failure_limit_are_tolerated():
    check = ThresholdCheck(name="errors", success_condition="error_rate < 0.01", count=5, failure_limit=2)
    assert assess_check(check, rates(0.02, 0.001, 0.02)).phase == CheckPhase.RUNNING
    assert assess_check(check, rates(0.02, 0.001, 0.02, 0.0, 0.0)).phase == CheckPhase.SUCCESSFUL
    assert assess_check(check, rates(0.02, 0.02, 0.02)).phase == CheckPhase.FAILED
    never = ThresholdCheck(name="errors", success_condition="error_rate < 0.01", count=3, failure_limit=-1)
    assert assess_check(never, rates(0.5, 0.5, 0.5)).phase == CheckPhase.SUCCESSFUL


def test_errors_in_a_row_beyond_the_limit_error_the_check_and_do_not_count_towards_count():
    check = ThresholdCheck(name="errors", success_condition="error_rate < 0.01", count=3)
    four = rates(0, 0, 0, 0, 0.0, error_at=(0, 1, 2, 3))
    assert assess_check(check, four).phase == CheckPhase.RUNNING  # 4 errors then 1 success: 1 of 3 counted
    five = rates(0, 0, 0, 0, 0, error_at=(0, 1, 2, 3, 4))
    result = assess_check(check, five)
    assert (result.phase, result.consecutive_errors) == (CheckPhase.ERROR, 5)
    assert result.reason.startswith("errors: 5 errors in a row, more than the limit 4 → error")
    broken_streak = rates(0, 0, 0, 0.0, 0, 0, 0, error_at=(0, 1, 2, 4, 5, 6))
    assert assess_check(check, broken_streak).errors == 6
    assert assess_check(check, broken_streak).phase == CheckPhase.RUNNING


def test_inconclusive_measurements_beyond_the_limit_make_the_check_inconclusive():
    check = ThresholdCheck(
        name="errors",
        success_condition="error_rate < 0.01",
        failure_condition="error_rate > 0.05",
        inconclusive_limit=1,
        count=4,
    )
    assert assess_check(check, rates(0.02, 0.0)).phase == CheckPhase.RUNNING
    assert assess_check(check, rates(0.02, 0.03)).phase == CheckPhase.INCONCLUSIVE


def test_a_check_without_count_runs_until_the_analysis_ends():
    check = ThresholdCheck(name="errors", success_condition="error_rate < 0.01")
    assert assess_check(check, []).phase == CheckPhase.PENDING
    assert assess_check(check, rates(*[0.001] * 50)).phase == CheckPhase.RUNNING
    assert assess_check(check, rates(*[0.001] * 50), terminating=True).phase == CheckPhase.SUCCESSFUL
    assert assess_check(check, [], terminating=True).phase == CheckPhase.SUCCESSFUL


def test_missing_values_are_measurement_errors_with_the_reason():
    check = ThresholdCheck(
        name="latency", success_condition="result[0] >= 0.99 and latency_p95 < 300", count=1
    )
    result = assess_check(check, [Measurement(values={"result": [0.995]})])
    assert result.measurements[0].phase == CheckPhase.ERROR
    assert "no value named 'latency_p95'" in result.measurements[0].reason


def test_several_checks_take_the_worst_phase_and_stop_early_on_a_failure():
    ok = ThresholdCheck(name="ok", success_condition="error_rate < 0.01", count=2)
    bad = ThresholdCheck(name="bad", success_condition="error_rate < 0.01", count=2)
    slow = ThresholdCheck(name="slow", success_condition="error_rate < 0.01", count=10)
    done = {"ok": rates(0.0, 0.0), "bad": rates(0.5), "slow": rates(0.0)}
    assert assess_checks([ok, slow], done).phase == CheckPhase.RUNNING
    verdict_ = assess_checks([ok, bad, slow], done)
    assert verdict_.phase == CheckPhase.FAILED and verdict_.reason.startswith("bad: 1 failed measurement")
    assert assess_checks([ok], done).reason == "all 1 checks successful"


def test_checks_are_validated_when_a_template_is_saved():
    names = validate_check(ThresholdCheck(name="x", success_condition="result[0] >= 0.99 and p95 < 300"))
    assert names == {"result", "p95"}
    with pytest.raises(ExpressionInvalid) as error:
        validate_check(ThresholdCheck(name="x", failure_condition="error_rate >"))
    assert (error.value.field, error.value.position) == ("failure_condition", 12)
    with pytest.raises(ValueError, match="count"):
        validate_check(ThresholdCheck(name="x", count=0))
