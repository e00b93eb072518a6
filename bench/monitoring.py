"""The canary judge on 20 metrics × 1,000 samples a side (goal: < 50 ms), against SciPy's raw test.

Half the metrics are error ratios (heavily tied), half latencies (continuous); a second figure has
all 20 continuous, the judge's slowest case.
The baseline is scipy.stats.mannwhitneyu on the same data: the p-value only, no interval, no
Hodges-Lehmann estimate, no scoring.  Best of 20 runs each, measured in the same process.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from scipy.stats import mannwhitneyu

from monitoring.judge import Direction, JudgeConfig, MetricData, MetricSpec, judge_canary

METRICS = 20
SAMPLES = 1000
REPEATS = 20


def data(*, continuous_only: bool = False) -> list[MetricData]:
    rng = np.random.default_rng(42)
    metrics = []
    for i in range(METRICS):
        if i % 2 or continuous_only:  # latency-like: continuous, skewed; one metric regressed by 10 %
            canary = rng.lognormal(5, 0.5, SAMPLES) * (1.1 if i == 3 else 1.0)
            baseline = rng.lognormal(5, 0.5, SAMPLES)
            spec = MetricSpec(name=f"latency_{i}", direction=Direction.INCREASE, unit="ms")
        else:  # error-ratio-like: per-interval ratios of binomial counts, heavily tied
            canary = rng.binomial(2000, 0.01, SAMPLES) / 2000
            baseline = rng.binomial(2000, 0.01, SAMPLES) / 2000
            spec = MetricSpec(name=f"error_rate_{i}", direction=Direction.INCREASE, unit="%")
        metrics.append(MetricData(spec=spec, canary=canary, baseline=baseline))
    return metrics


def best_ms(fn) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    metrics = data()
    config = JudgeConfig()
    judge_ms = best_ms(lambda: judge_canary(metrics, config))
    arrays = [(np.asarray(m.canary), np.asarray(m.baseline)) for m in metrics]
    scipy_ms = best_ms(lambda: [mannwhitneyu(c, b, method="asymptotic") for c, b in arrays])
    verdict = judge_canary(metrics, config)
    # The worst case: every metric continuous (no ties to fold), as latencies are.
    continuous = data(continuous_only=True)
    continuous_ms = best_ms(lambda: judge_canary(continuous, config))
    print(f"bench: monitoring.judge_{METRICS}x{SAMPLES}_ms {judge_ms:.1f} ms")
    print(f"bench: monitoring.judge_{METRICS}x{SAMPLES}_ms.scipy_raw {scipy_ms:.1f} ms")
    print(f"bench: monitoring.judge_{METRICS}x{SAMPLES}_continuous_ms {continuous_ms:.1f} ms")
    print(f"# verdict: {verdict.reason}")


if __name__ == "__main__":
    main()
