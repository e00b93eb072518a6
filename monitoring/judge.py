"""Canary judgment and threshold checks: pure statistics, no Django import (SciPy/NumPy only).

Two judges, both taking frozen dataclasses and returning frozen dataclasses with reasons in words.

Canary judge (:func:`judge_canary`), after Kayenta's NetflixACAJudge
=====================================================================
Taken from Kayenta (``kayenta-judge``: ``MannWhitneyClassifier.scala``, ``NetflixACAJudge.scala``,
``WeightedSumScorer.scala``, ``ThresholdScoreClassifier.scala``; ``kayenta-mannwhitney``):

* Per metric, a two-sided Mann-Whitney (Wilcoxon rank-sum) comparison of canary against baseline at
  98 % confidence.  The confidence interval and estimate are for the *location shift* canary − baseline:
  the Hodges-Lehmann estimate (median of all canary − baseline differences) and the interval obtained by
  inverting the Wilcoxon statistic with the normal approximation, tie correction and continuity
  correction, exactly as Kayenta's ``wilcoxonDiff`` root-finding does.  Kayenta finds the bounds with a
  Brent solver on that step function; here they are read off as order statistics of the differences
  (the step function jumps only at those), which gives the same values without the solver.
* Tolerance: bounds are ±``tolerance`` × |Hodges-Lehmann estimate| (Kayenta: 0.25).  The metric is
  **high** when the direction is ``increase`` or ``either``, the interval's lower end is above
  +0.25 × |estimate| and the mean ratio canary/baseline is ≥ ``allowed_increase`` (default 1.0);
  **low** symmetrically (upper end below −0.25 × |estimate|, ratio ≤ ``allowed_decrease``).  A mean
  ratio that cannot be computed skips the ratio check, as in Kayenta; Kayenta computes it unless a
  mean is 0, Slipway only when both means are positive (a ratio of a negative mean flips the check).
* A ``critical`` metric that is high with ratio ≥ ``critical_increase`` (or low with ratio ≤
  ``critical_decrease``) fails the whole run (score 0); so does a critical metric without data.
* No data: NaNs (and infinities) are removed (``nan_strategy="remove"``, the default) or replaced by 0
  (``"replace"``).  Kayenta calls a metric "no data" only when a side is empty; Slipway also when a side
  has fewer than ``min_samples`` (default :data:`MIN_SAMPLES`), because the normal approximation means
  nothing below that.  No data with ``must_have_data`` is ``nodata_fail`` (counts as a failing metric);
  with ``nan_strategy="replace"`` it is a pass (Kayenta's rule).  ≥ 50 % of the metrics without data
  fails the run (score 0).
* Identical samples, or a single value shared by both sides, pass without a test.  Where both sides are
  constant but different, Kayenta adds 1e-5-scale Gaussian noise to break ties; the shift is then
  known exactly, so Slipway uses it directly (interval = estimate = the difference).  Deterministic.
* Score, per group: weighted passing metrics / weighted metrics with a result (pass, high, low,
  nodata_fail) × 100.  A metric's ``weight`` defaults to 1, which is Kayenta's count.  The summary is
  the weighted mean of group scores; groups without a weight share what is left of 100 (Kayenta), and a
  group whose metrics all lack data counts as 100.  Muted metrics are reported but not scored.
  Grade: score ≥ ``pass_threshold`` (95) passes, ≥ ``marginal_threshold`` (75) is marginal, else fails.

Not from Kayenta: a p-value (the same test at a shift of 0, tie- and continuity-corrected like SciPy's
``mannwhitneyu``) reported in the reasons; ``min_samples``; per-metric weights; the wording.

Default sample size
-------------------
:data:`DEFAULT_SAMPLES` = 60 per side: Slipway's default canary analysis lasts 10 minutes and takes a
sample every 10 seconds from canary and baseline alike.  The power test in ``tests/monitoring`` uses it,
with per-sample error ratios of binomial counts over 200 requests (20 requests/s a side): 1 % → 2 %
is caught in 98.5 % of 1,000 runs, identical versions alarm in 0 %.  At 10 requests/s power falls to
about 40 %: low-traffic canaries need longer analyses.

Threshold checks (:func:`assess_check`), after Argo Rollouts' AnalysisRun
=========================================================================
Taken from Argo Rollouts (``utils/evaluate/evaluate.go``, ``analysis/analysis.go``):

* Each measurement is judged by ``success_condition`` and/or ``failure_condition`` (see
  :mod:`monitoring.expressions`): failure if the failure condition holds; success if the success
  condition holds; with only a success condition, not holding is a failure; with only a failure
  condition, not holding is a success; with both and neither holding, inconclusive; with none,
  success.  A measurement that could not be taken or evaluated is an error.
* A check fails when failed measurements > ``failure_limit`` (default 0, −1 disables), is inconclusive
  when inconclusive > ``inconclusive_limit`` (default 0), errors when *consecutive* errors >
  ``consecutive_error_limit`` (default 4; a measurement that is not an error resets the streak);
  later rules win, as in Argo.  Errors do not count towards ``count``.  When ``count`` measurements
  are in and no limit is broken it succeeds; without a count it runs until the analysis ends.
* Several checks: the worst phase wins (successful < running < pending < inconclusive < error < failed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy.special import ndtr, ndtri

from monitoring.expressions import EvaluationError, Expression, ExpressionInvalid, compile_expression

__all__ = [
    "DEFAULT_SAMPLES",
    "MIN_SAMPLES",
    "CanaryVerdict",
    "CheckPhase",
    "CheckResult",
    "ChecksVerdict",
    "Classification",
    "Direction",
    "ExpressionInvalid",
    "Grade",
    "GroupScore",
    "JudgeConfig",
    "Measurement",
    "MetricData",
    "MetricResult",
    "MetricSpec",
    "NanStrategy",
    "ShiftTest",
    "SideSummary",
    "ThresholdCheck",
    "assess_check",
    "assess_checks",
    "judge_canary",
    "shift_test",
    "validate_check",
    "validate_spec",
]

DEFAULT_SAMPLES = 60  # per side: a 10-minute analysis sampled every 10 s
MIN_SAMPLES = 10  # fewer on either side is "no data"
NODATA_THRESHOLD = 50.0  # percent of metrics without data that fails the run (Kayenta)
DEFAULT_GROUP = "default"


# =========================================================================== canary judge: types


class Direction(StrEnum):
    INCREASE = "increase"  # only an increase is bad (errors, latency)
    DECREASE = "decrease"  # only a decrease is bad (throughput, success rate)
    EITHER = "either"


class NanStrategy(StrEnum):
    REMOVE = "remove"
    REPLACE = "replace"  # NaN counts as 0


class Classification(StrEnum):
    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"
    NODATA_FAIL = "nodata_fail"  # no data for a metric marked must_have_data: counts as a failure


class Grade(StrEnum):
    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    """How one metric is judged (stored with the analysis template)."""

    name: str
    direction: Direction = Direction.EITHER
    critical: bool = False
    must_have_data: bool = False
    muted: bool = False
    nan_strategy: NanStrategy = NanStrategy.REMOVE
    groups: tuple[str, ...] = (DEFAULT_GROUP,)
    weight: float = 1.0
    # Effect-size bounds on the mean ratio canary / baseline (Kayenta's allowedIncrease & co.).
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0
    unit: str = ""  # shown after values; "%" means the values are ratios shown as percentages


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricData:
    """One metric's samples: canary and baseline (sequences or NumPy arrays of floats)."""

    spec: MetricSpec
    canary: Sequence[float] | np.ndarray
    baseline: Sequence[float] | np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeConfig:
    confidence: float = 0.98
    tolerance: float = 0.25
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0
    min_samples: int = MIN_SAMPLES
    group_weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShiftTest:
    """Mann-Whitney comparison of canary − baseline: Hodges-Lehmann estimate, interval, two-sided p."""

    estimate: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SideSummary:
    count: int
    mean: float
    median: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricResult:
    name: str
    classification: Classification
    fails_run: bool  # critical metric that is high, low or without data
    reason: str
    canary: SideSummary
    baseline: SideSummary
    ratio: float  # mean canary / mean baseline (NaN unless both means are positive)
    test: ShiftTest | None
    groups: tuple[str, ...]
    weight: float
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupScore:
    name: str
    score: float
    no_data: bool
    counts: Mapping[Classification, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryVerdict:
    grade: Grade
    score: float
    reason: str
    metrics: tuple[MetricResult, ...]
    groups: tuple[GroupScore, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """The verdict's reason, then each metric's, for pages and the API."""
        return (self.reason, *(m.reason for m in self.metrics))


# =========================================================================== statistics


def _row_counts(xs: np.ndarray, z: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each value in ``v`` (shape (k,)) and row i: #{j: xs[i] + z[j] < v}, shape (k, m).

    Exact in floating point: ``fl(xs[i] + z[j])`` is monotone in ``z[j]``, so a searchsorted guess is
    corrected by whole runs of equal ``z`` until every row's boundary is right.
    """
    m, n = xs.size, z.size
    target = np.repeat(v, m) if v.size > 1 else np.full(m, v[0])
    rows = np.tile(xs, v.size) if v.size > 1 else xs
    k = np.searchsorted(z, target - rows, side="left")
    for _ in range(64):
        back = (k > 0) & ~(rows + z[np.maximum(k - 1, 0)] < target)
        if back.any():
            k[back] = np.searchsorted(z, z[k[back] - 1], side="left")
            continue
        forward = (k < n) & (rows + z[np.minimum(k, n - 1)] < target)
        if forward.any():
            k[forward] = np.searchsorted(z, z[k[forward]], side="right")
            continue
        break
    return k.reshape(v.size, m)


_DIRECT_LIMIT = 40_000  # at most this many (distinct) differences: materialise them all
_CANDIDATES = 4_000  # narrow a bracket until it holds about this many differences


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and how often each occurs."""
    edges = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate(([0], edges))
    return sorted_values[starts], np.diff(np.concatenate((starts, [sorted_values.size])))


def _difference_order_statistics(
    xs: np.ndarray,
    ys: np.ndarray,
    ranks: np.ndarray,
    *,
    runs: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None,
) -> np.ndarray:
    """Values of the given 1-based ranks among all m·n differences xs[i] − ys[j] (xs, ys sorted).

    Exact, without materialising a million differences: few distinct values (error counts…) are
    weighted by multiplicity; otherwise a coarse grid of differences brackets each rank, exact
    counts at interpolated probes narrow the bracket, and only the differences inside are partitioned.
    """
    m, n = xs.size, ys.size
    if m * n <= _DIRECT_LIMIT:
        flat = np.subtract.outer(xs, ys).ravel()
        return np.partition(flat, ranks - 1)[ranks - 1]
    (ux, cx), (uy, cy) = runs or (_runs(xs), _runs(ys))
    if ux.size * uy.size <= _DIRECT_LIMIT:
        values = np.subtract.outer(ux, uy).ravel()
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(np.multiply.outer(cx, cy).ravel()[order])
        return values[order][np.searchsorted(cumulative, ranks, side="left")]

    z = -ys[::-1]  # ascending; xs[i] + z[j] == xs[i] - ys[n-1-j] exactly
    grid_size = 64
    gx = xs[np.linspace(0, m - 1, grid_size).round().astype(np.intp)]
    gz = z[np.linspace(0, n - 1, grid_size).round().astype(np.intp)]
    total = m * n
    spread = 3.0 / grid_size  # the grid's quantiles are within about 2/grid_size of the differences'

    def place(fraction: float) -> int:
        return min(max(int(fraction * grid_size**2), 0), grid_size**2 - 1)

    places = sorted({place(r / total + sign * spread) for r in ranks.tolist() for sign in (-1, 1)})
    grid = np.partition(np.add.outer(gx, gz).ravel(), places)  # only these places are needed in order
    out = np.empty(ranks.size)
    # Ranks close together (the two middle ones) share a bracket.
    clusters: list[list[int]] = []
    for index, rank in enumerate(ranks.tolist()):
        if clusters and rank - ranks[clusters[-1][-1]] <= _CANDIDATES // 4:
            clusters[-1].append(index)
        else:
            clusters.append([index])
    for cluster in clusters:
        first, last = int(ranks[cluster[0]]), int(ranks[cluster[-1]])
        # Bracket [lo, hi) with #{D < lo} < first and #{D < hi} >= last: the ranks lie inside.
        lo, hi = -np.inf, np.inf
        start, stop = np.zeros(m, np.intp), np.full(m, n, np.intp)  # per-row counts below lo and hi
        c_lo, c_hi = 0, total
        probes = grid[[place(first / total - spread), place(last / total + spread)]]
        for _ in range(6):
            per_row = _row_counts(xs, z, probes)
            for value, row_counts in zip(probes.tolist(), per_row, strict=True):
                count = int(row_counts.sum())
                if count < first and value > lo:
                    lo, c_lo, start = value, count, row_counts
                if count >= last and value < hi:
                    hi, c_hi, stop = value, count, row_counts
            if c_hi - c_lo <= _CANDIDATES or not (np.isfinite(lo) and np.isfinite(hi)):
                break
            # Interpolate where the ranks sit between lo and hi; probe just outside them.
            width = hi - lo
            at_first = lo + width * (first - c_lo) / (c_hi - c_lo)
            at_last = lo + width * (last - c_lo) / (c_hi - c_lo)
            margin = width * max(0.5 * _CANDIDATES / (c_hi - c_lo), 0.002)
            probes = np.array([at_first - margin, at_last + margin])
            probes = probes[(probes > lo) & (probes < hi)]
            if probes.size == 0:
                break
        lengths = stop - start
        count = int(lengths.sum())
        rows = np.repeat(np.arange(m), lengths)
        offsets = np.arange(count) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        candidates = xs[rows] + z[offsets + np.repeat(start, lengths)]
        kth = ranks[cluster] - int(start.sum()) - 1
        out[cluster] = np.partition(candidates, kth)[kth]
    return out


def shift_test(
    canary: np.ndarray | Sequence[float], baseline: np.ndarray | Sequence[float], *, confidence: float = 0.98
) -> ShiftTest:
    """Hodges-Lehmann shift canary − baseline with Kayenta's Wilcoxon interval, and the two-sided p at 0.

    Both samples must be finite and non-empty.
    """
    xs = np.sort(np.asarray(canary, dtype=np.float64))
    ys = np.sort(np.asarray(baseline, dtype=np.float64))
    return _shift_test_sorted(xs, ys, confidence)


def _shift_test_sorted(xs: np.ndarray, ys: np.ndarray, confidence: float) -> ShiftTest:
    m, n = xs.size, ys.size
    N = m + n
    mn = m * n
    ux, cx = _runs(xs)
    uy, cy = _runs(ys)
    ties_x = float(np.sum(cx.astype(np.float64) ** 3 - cx))
    ties_y = float(np.sum(cy.astype(np.float64) ** 3 - cy))
    # Values present on both sides tie across samples at shift 0.
    at = np.minimum(np.searchsorted(uy, ux), uy.size - 1)
    shared = uy[at] == ux
    a, b = cx[shared].astype(np.float64), cy[at[shared]].astype(np.float64)
    ties_pooled = ties_x + ties_y + float(np.sum((a + b) ** 3 - (a + b) - (a**3 - a) - (b**3 - b)))
    # p-value at shift 0: U = #{x > y} + ½ #{x = y}.
    u = float(np.searchsorted(ys, xs, side="left").sum()) + 0.5 * float(np.sum(a * b))
    var0 = mn / 12.0 * ((N + 1) - ties_pooled / (N * (N - 1))) if N > 1 else 0.0
    if var0 > 0:
        dz = u - mn / 2.0
        z0 = (dz - 0.5 * np.sign(dz)) / math.sqrt(var0)
        p_value = float(min(1.0, 2.0 * ndtr(-abs(z0))))
    else:
        p_value = 1.0
    # Interval: shifts where the continuity-corrected z of the shifted samples stays within ±q.
    # Away from the jump points no canary value ties a baseline one, so only within-sample ties count.
    var = mn / 12.0 * ((N + 1) - (ties_x + ties_y) / (N * (N - 1))) if N > 1 else 0.0
    if var <= 0:  # both sides constant: the shift is exact (Kayenta jitters them instead)
        d = float(xs[0] - ys[0])
        return ShiftTest(estimate=d, low=d, high=d, p_value=p_value)
    q = float(ndtri(1.0 - (1.0 - confidence) / 2.0)) * math.sqrt(var)
    c_low = mn / 2.0 + 0.5 + q  # #{D > shift} at the lower bound
    c_high = mn / 2.0 - 0.5 - q
    r_low = min(max(math.floor(mn - c_low) + 1, 1), mn)
    r_high = min(max(math.floor(mn - c_high) + 1, 1), mn)
    mid_a, mid_b = (mn + 1) // 2, mn // 2 + 1
    ranks = np.array(sorted({r_low, r_high, mid_a, mid_b}), dtype=np.int64)
    found = _difference_order_statistics(xs, ys, ranks, runs=((ux, cx), (uy, cy)))
    values = dict(zip(ranks.tolist(), found.tolist(), strict=True))
    estimate = (values[mid_a] + values[mid_b]) / 2.0
    return ShiftTest(estimate=estimate, low=values[r_low], high=values[r_high], p_value=p_value)


# =========================================================================== canary judge


def validate_spec(spec: MetricSpec) -> None:
    """ValueError naming the field if a metric spec cannot be judged (call it when a template is saved)."""
    if not spec.name:
        raise ValueError("name: a metric needs a name")
    for name in ("allowed_increase", "allowed_decrease", "critical_increase", "critical_decrease", "weight"):
        value = getattr(spec, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: must be a finite number ≥ 0, not {value!r}")
    if not spec.groups:
        raise ValueError("groups: a metric belongs to at least one group")
    for name, kind in (("direction", Direction), ("nan_strategy", NanStrategy)):
        if getattr(spec, name) not in set(kind):
            raise ValueError(f"{name}: one of {', '.join(kind)}, not {getattr(spec, name)!r}")


def _validate_config(config: JudgeConfig) -> None:
    if not 0.5 < config.confidence < 1:
        raise ValueError(f"confidence: between 0.5 and 1, not {config.confidence!r}")
    if not 0 <= config.marginal_threshold <= config.pass_threshold <= 100:
        raise ValueError("thresholds: 0 ≤ marginal ≤ pass ≤ 100")
    if config.tolerance < 0 or config.min_samples < 1:
        raise ValueError("tolerance ≥ 0 and min_samples ≥ 1")
    weights = list(config.group_weights.values())
    if any(w < 0 for w in weights) or sum(weights) > 100 + 1e-9:
        raise ValueError("group_weights: each ≥ 0, together ≤ 100")


def _clean(values: Sequence[float] | np.ndarray, strategy: NanStrategy) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(array)
    if finite.all():
        return array
    if strategy == NanStrategy.REPLACE:
        return np.where(finite, array, 0.0)
    return array[finite]


def _summary(values: np.ndarray) -> SideSummary:
    if values.size == 0:
        return SideSummary(count=0, mean=math.nan, median=math.nan)
    # values are sorted
    half = values.size // 2
    median = values[half] if values.size % 2 else (values[half - 1] + values[half]) / 2
    return SideSummary(count=int(values.size), mean=float(values.mean()), median=float(median))


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{_sig(value * 100)} %"
    return f"{_sig(value)} {unit}".rstrip()


def format_value(value: float, unit: str = "") -> str:
    """A value as the reasons show it: three significant digits, ratios in `%` as percentages."""
    return _fmt(value, unit)


def _fmt_shift(value: float, unit: str) -> str:
    return ("+" if value > 0 else "") + _fmt(value, unit)


def _sig(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.3g}"
    decimals = max(0, 2 - math.floor(math.log10(magnitude)))
    text = f"{value:.{min(decimals, 4)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _classify(data: MetricData, config: JudgeConfig) -> MetricResult:
    spec = data.spec
    canary = np.sort(_clean(data.canary, spec.nan_strategy))
    baseline = np.sort(_clean(data.baseline, spec.nan_strategy))
    c_sum, b_sum = _summary(canary), _summary(baseline)
    # A ratio of means only means something for positive values; Kayenta excludes just a mean of 0.
    ratio = (
        c_sum.mean / b_sum.mean
        if c_sum.count and b_sum.count and c_sum.mean > 0 and b_sum.mean > 0
        else math.nan
    )
    unit = spec.unit

    def result(
        classification: Classification, reason: str, *, fails_run: bool = False, test: ShiftTest | None = None
    ) -> MetricResult:
        return MetricResult(
            name=spec.name,
            classification=classification,
            fails_run=fails_run,
            reason=f"{spec.name}: {reason}",
            canary=c_sum,
            baseline=b_sum,
            ratio=ratio,
            test=test,
            groups=spec.groups,
            weight=spec.weight,
            muted=spec.muted,
        )

    if min(canary.size, baseline.size) < config.min_samples:
        counts = f"{canary.size} canary and {baseline.size} baseline samples, fewer than {config.min_samples}"
        if spec.nan_strategy == NanStrategy.REPLACE:
            return result(Classification.PASS, f"{counts}; missing data counts as a pass here → pass")
        if spec.critical:
            return result(
                Classification.NODATA,
                f"{counts} → no data, and the metric is critical: the run fails",
                fails_run=True,
            )
        if spec.must_have_data:
            return result(Classification.NODATA_FAIL, f"{counts} → no data, and data is required: fail")
        return result(Classification.NODATA, f"{counts} → no data")

    means = f"canary {_fmt(c_sum.mean, unit)} vs baseline {_fmt(b_sum.mean, unit)}"
    if canary.size == baseline.size and np.array_equal(canary, baseline):
        return result(Classification.PASS, f"{means}, identical samples → pass")
    if canary[0] == canary[-1] == baseline[0] == baseline[-1]:
        return result(Classification.PASS, f"{means}, a single value throughout → pass")

    test = _shift_test_sorted(canary, baseline, config.confidence)
    bound = config.tolerance * abs(test.estimate)
    ratio_known = not math.isnan(ratio)
    up = spec.direction in (Direction.INCREASE, Direction.EITHER)
    down = spec.direction in (Direction.DECREASE, Direction.EITHER)
    high = up and test.low > bound and (not ratio_known or ratio >= spec.allowed_increase)
    low = down and test.high < -bound and (not ratio_known or ratio <= spec.allowed_decrease)
    times = f" ({ratio:.2f}×)" if ratio_known else ""
    level = f"{config.confidence * 100:g} %"
    evidence = (
        f"{means}{times}, shift {_fmt_shift(test.estimate, unit)} "
        f"[{level} interval {_fmt_shift(test.low, unit)} to {_fmt_shift(test.high, unit)}], {_fmt_p(test.p_value)}"
    )

    if high or low:
        label = Classification.HIGH if high else Classification.LOW
        if spec.critical and (
            not ratio_known or (ratio >= spec.critical_increase if high else ratio <= spec.critical_decrease)
        ):
            word = "too high" if high else "too low"
            return result(
                label,
                f"{evidence} → {word}, and the metric is critical: the run fails",
                fails_run=True,
                test=test,
            )
        return result(label, f"{evidence} → {'too high' if high else 'too low'}: fail", test=test)

    # Why it passed, in words.
    if test.low > bound or test.high < -bound:
        moved = "higher" if test.low > bound else "lower"
        if (moved == "higher" and not up) or (moved == "lower" and not down):
            why = f"{moved}, which is fine for this metric"
        else:
            allowed = spec.allowed_increase if moved == "higher" else spec.allowed_decrease
            why = f"{moved}, but within the allowed ratio {allowed:g}×"
    elif test.low > 0 or test.high < 0:
        why = f"a shift within the {config.tolerance * 100:g} % tolerance"
    else:
        why = "no significant difference"
    return result(Classification.PASS, f"{evidence} → pass ({why})", test=test)


def _group_scores(results: Sequence[MetricResult]) -> list[GroupScore]:
    scored = (Classification.PASS, Classification.HIGH, Classification.LOW, Classification.NODATA_FAIL)
    groups: dict[str, list[MetricResult]] = {}
    for r in results:
        for g in r.groups:
            groups.setdefault(g, []).append(r)
    out = []
    for name, members in groups.items():
        counts = {c: sum(1 for r in members if r.classification == c) for c in Classification}
        weight_with_result = sum(r.weight for r in members if r.classification in scored)
        weight_passing = sum(r.weight for r in members if r.classification == Classification.PASS)
        no_data = weight_with_result == 0
        score = 0.0 if no_data else weight_passing / weight_with_result * 100
        out.append(GroupScore(name=name, score=score, no_data=no_data, counts=counts))
    return out


def _summary_score(groups: Sequence[GroupScore], weights: Mapping[str, float]) -> float:
    unweighted = [g for g in groups if g.name not in weights]
    share = (
        (100 - sum(weights.get(g.name, 0) for g in groups if g.name in weights)) / len(unweighted)
        if unweighted
        else 0
    )
    total = weighted = 0.0
    for g in groups:
        w = weights.get(g.name, share)
        total += w
        weighted += (100.0 if g.no_data else g.score) * w
    return round(weighted / total, 2) if total > 0 else 100.0


def judge_canary(metrics: Sequence[MetricData], config: JudgeConfig | None = None) -> CanaryVerdict:
    """Judge a canary against its baseline metric by metric, score it and grade it (see the module doc)."""
    config = config or JudgeConfig()
    _validate_config(config)
    results = tuple(_classify(m, config) for m in metrics)
    active = [r for r in results if not r.muted]
    groups = _group_scores(active)
    thresholds = f"pass ≥ {config.pass_threshold:g}, marginal ≥ {config.marginal_threshold:g}"

    if not active:  # Kayenta: no group, score 0
        return CanaryVerdict(
            grade=Grade.FAIL,
            score=0.0,
            metrics=results,
            groups=(),
            reason="fail: no metric to judge (score 0)",
        )
    critical = [r for r in active if r.fails_run]
    nodata = [r for r in active if r.classification == Classification.NODATA]
    if critical:
        names = ", ".join(r.name for r in critical)
        return CanaryVerdict(
            grade=Grade.FAIL,
            score=0.0,
            metrics=results,
            groups=tuple(groups),
            reason=f"fail: critical metric{'s' if len(critical) > 1 else ''} {names} failed (score 0)",
        )
    if len(nodata) / len(active) * 100 >= NODATA_THRESHOLD:
        return CanaryVerdict(
            grade=Grade.FAIL,
            score=0.0,
            metrics=results,
            groups=tuple(groups),
            reason=f"fail: {len(nodata)} of {len(active)} metrics have no data "
            f"(≥ {NODATA_THRESHOLD:g} %, score 0)",
        )
    score = _summary_score(groups, config.group_weights)
    grade = (
        Grade.PASS
        if score >= config.pass_threshold
        else Grade.MARGINAL
        if score >= config.marginal_threshold
        else Grade.FAIL
    )
    failing = [
        r.name
        for r in active
        if r.classification in (Classification.HIGH, Classification.LOW, Classification.NODATA_FAIL)
    ]
    passing = sum(1 for r in active if r.classification == Classification.PASS)
    with_result = passing + len(failing)
    detail = f"{passing} of {with_result} metrics pass" + (
        f"; failing: {', '.join(failing)}" if failing else ""
    )
    if nodata:
        detail += f"; {len(nodata)} without data"
    return CanaryVerdict(
        grade=grade,
        score=score,
        metrics=results,
        groups=tuple(groups),
        reason=f"{grade.value}: score {score:g} ({detail}; {thresholds})",
    )


# =========================================================================== threshold checks


class CheckPhase(StrEnum):
    SUCCESSFUL = "successful"
    RUNNING = "running"
    PENDING = "pending"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    FAILED = "failed"

    @property
    def completed(self) -> bool:
        return self not in (CheckPhase.RUNNING, CheckPhase.PENDING)


_WORSE = list(CheckPhase)  # declared best to worst, as Argo's analysisStatusOrder


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdCheck:
    """One metric checked against conditions at each measurement (Argo Rollouts' Metric)."""

    name: str
    success_condition: str = ""
    failure_condition: str = ""
    count: int | None = None  # measurements to take; None: until the analysis ends
    interval_seconds: float = 60.0  # for the scheduler; the judge only counts
    failure_limit: int = 0  # -1: failures never fail the check
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """What one query returned: named values, or the error that stopped it."""

    values: Mapping[str, float | Sequence[float]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementOutcome:
    phase: CheckPhase  # successful, failed, inconclusive or error
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    phase: CheckPhase
    reason: str
    measurements: tuple[MeasurementOutcome, ...]
    successful: int
    failed: int
    inconclusive: int
    errors: int
    consecutive_errors: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksVerdict:
    phase: CheckPhase
    reason: str
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    success: Expression | None
    failure: Expression | None


def _compile_check(check: ThresholdCheck) -> _Compiled:
    success = (
        compile_expression(check.success_condition, field="success_condition")
        if check.success_condition
        else None
    )
    failure = (
        compile_expression(check.failure_condition, field="failure_condition")
        if check.failure_condition
        else None
    )
    return _Compiled(success, failure)


def validate_check(check: ThresholdCheck) -> frozenset[str]:
    """Check a threshold check when its template is saved; returns the value names its conditions read.

    Raises :class:`ExpressionInvalid` (with ``field`` and ``position``) or ValueError naming the field.
    """
    compiled = _compile_check(check)
    if not check.name:
        raise ValueError("name: a check needs a name")
    if check.count is not None and check.count < 1:
        raise ValueError("count: at least 1, or none to measure until the analysis ends")
    if check.failure_limit < -1:
        raise ValueError("failure_limit: -1 (never fail), 0 or more")
    if check.inconclusive_limit < 0 or check.consecutive_error_limit < 0:
        raise ValueError("inconclusive_limit and consecutive_error_limit: 0 or more")
    if not (math.isfinite(check.interval_seconds) and check.interval_seconds > 0):
        raise ValueError("interval_seconds: more than 0")
    names: set[str] = set()
    for expression in (compiled.success, compiled.failure):
        if expression is not None:
            names |= expression.names
    return frozenset(names)


def _values_text(expression: Expression, values: Mapping[str, object]) -> str:
    shown = [f"{name} = {values[name]!r}" for name in sorted(expression.names) if name in values]
    return ", ".join(shown)


def _measure(compiled: _Compiled, measurement: Measurement) -> MeasurementOutcome:
    if measurement.error is not None:
        return MeasurementOutcome(phase=CheckPhase.ERROR, reason=f"measurement failed: {measurement.error}")
    held: dict[str, bool] = {}
    for label, expression in (("success", compiled.success), ("failure", compiled.failure)):
        if expression is None:
            continue
        try:
            held[label] = expression.evaluate(measurement.values)
        except EvaluationError as error:
            return MeasurementOutcome(
                phase=CheckPhase.ERROR, reason=f"{label} condition `{expression.source}`: {error}"
            )
    if not held:
        return MeasurementOutcome(phase=CheckPhase.SUCCESSFUL, reason="no condition: successful")
    success = held.get("success", False)
    failure = held.get("failure", False)
    if "failure" not in held:
        failure = not success
    if "success" not in held:
        success = not failure
    expression = compiled.failure if failure and compiled.failure else compiled.success or compiled.failure
    assert expression is not None
    shown = _values_text(expression, measurement.values)
    if failure:
        if compiled.failure is not None and held.get("failure"):
            why = f"`{compiled.failure.source}` holds"
        else:
            why = f"`{compiled.success.source}` does not hold" if compiled.success else ""
        return MeasurementOutcome(phase=CheckPhase.FAILED, reason=f"{shown}: {why} → failed")
    if not success:
        return MeasurementOutcome(
            phase=CheckPhase.INCONCLUSIVE, reason=f"{shown}: neither condition holds → inconclusive"
        )
    why = (
        f"`{compiled.success.source}` holds"
        if compiled.success and held.get("success")
        else (f"`{compiled.failure.source}` does not hold" if compiled.failure else "")
    )
    return MeasurementOutcome(phase=CheckPhase.SUCCESSFUL, reason=f"{shown}: {why} → successful")


def assess_check(
    check: ThresholdCheck, measurements: Sequence[Measurement], *, terminating: bool = False
) -> CheckResult:
    """Judge each measurement, then the check as Argo Rollouts does; ``terminating``: the analysis is ending."""
    compiled = _compile_check(check)
    outcomes = tuple(_measure(compiled, m) for m in measurements)
    tally = {phase: 0 for phase in CheckPhase}
    consecutive_errors = 0
    for outcome in outcomes:
        tally[outcome.phase] += 1
        consecutive_errors = consecutive_errors + 1 if outcome.phase == CheckPhase.ERROR else 0
    failed, inconclusive = tally[CheckPhase.FAILED], tally[CheckPhase.INCONCLUSIVE]
    counted = tally[CheckPhase.SUCCESSFUL] + failed + inconclusive  # errors do not count towards `count`

    phase, reason = CheckPhase.RUNNING, ""
    if not outcomes:
        phase, reason = (
            (CheckPhase.SUCCESSFUL, "ended before any measurement → successful")
            if terminating
            else (CheckPhase.PENDING, "no measurement yet")
        )
    else:
        # Later rules win, as in Argo's assessMetricFailureInconclusiveOrError.
        broken = None
        if check.failure_limit >= 0 and failed > check.failure_limit:
            broken = (
                CheckPhase.FAILED,
                f"{failed} failed measurement{'s' if failed != 1 else ''}, "
                f"more than the failure limit {check.failure_limit}",
            )
        if inconclusive > check.inconclusive_limit:
            broken = (
                CheckPhase.INCONCLUSIVE,
                f"{inconclusive} inconclusive, more than the limit {check.inconclusive_limit}",
            )
        if consecutive_errors > check.consecutive_error_limit:
            broken = (
                CheckPhase.ERROR,
                f"{consecutive_errors} errors in a row, more than the limit {check.consecutive_error_limit}",
            )
        if broken is not None:
            phase, reason = broken[0], f"{broken[1]} → {broken[0].value}"
        elif check.count is not None and counted >= check.count:
            phase, reason = (
                CheckPhase.SUCCESSFUL,
                (
                    f"{counted} of {check.count} measurements taken, "
                    f"{failed} failed (limit {check.failure_limit}) → successful"
                ),
            )
        elif terminating:
            phase, reason = (
                CheckPhase.SUCCESSFUL,
                f"analysis ended after {counted} measurements, no limit broken → successful",
            )
        else:
            goal = f" of {check.count}" if check.count is not None else ""
            phase, reason = (
                CheckPhase.RUNNING,
                f"{counted}{goal} measurements taken, {failed} failed → running",
            )
    if outcomes:
        reason = f"{reason}; last: {outcomes[-1].reason}"
    return CheckResult(
        name=check.name,
        phase=phase,
        reason=f"{check.name}: {reason}",
        measurements=outcomes,
        successful=tally[CheckPhase.SUCCESSFUL],
        failed=failed,
        inconclusive=inconclusive,
        errors=tally[CheckPhase.ERROR],
        consecutive_errors=consecutive_errors,
    )


def assess_checks(
    checks: Sequence[ThresholdCheck],
    measurements: Mapping[str, Sequence[Measurement]],
    *,
    terminating: bool = False,
) -> ChecksVerdict:
    """All checks of an analysis: still running while any runs, else the worst phase (Argo's order)."""
    results = tuple(assess_check(c, measurements.get(c.name, ()), terminating=terminating) for c in checks)
    if not results:
        return ChecksVerdict(phase=CheckPhase.SUCCESSFUL, reason="no checks → successful", checks=())
    if not all(r.phase.completed for r in results):
        waiting = [r.name for r in results if not r.phase.completed]
        worst_done = max(
            (r for r in results if r.phase.completed), key=lambda r: _WORSE.index(r.phase), default=None
        )
        if worst_done is not None and worst_done.phase != CheckPhase.SUCCESSFUL:
            # Argo ends the run early once a metric fails, errors or is inconclusive.
            return ChecksVerdict(phase=worst_done.phase, reason=worst_done.reason, checks=results)
        return ChecksVerdict(
            phase=CheckPhase.RUNNING, reason=f"running: {', '.join(waiting)}", checks=results
        )
    worst = max(results, key=lambda r: _WORSE.index(r.phase))
    if worst.phase == CheckPhase.SUCCESSFUL:
        return ChecksVerdict(
            phase=worst.phase, reason=f"all {len(results)} checks successful", checks=results
        )
    return ChecksVerdict(phase=worst.phase, reason=worst.reason, checks=results)
