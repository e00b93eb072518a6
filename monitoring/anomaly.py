"""New-error detection: is an error rate significantly above the previous version's?  Pure (SciPy only).

Errors are counted against an exposure (requests, or seconds of traffic) for the current version and
the previous one — for all errors, or for one error group (fingerprint).  Counts are treated as Poisson
with rates r₁ (current) and r₀ (previous).  Given the total k = k₁ + k₀, k₁ is binomial with
p = t₁ / (t₁ + t₀) when the rates are equal, so the one-sided p-value of "r₁ > r₀" is
P(Binomial(k, p) ≥ k₁): the exact conditional test (Przyborowski & Wileński 1940), conservative and
valid for small counts, including a group never seen before (k₀ = 0).

An increase is reported when all three hold:
* p < ``alpha`` (default 0.01: a new-error alert should rarely be wrong),
* the rate ratio r₁ / r₀ is at least ``min_ratio`` (default 1.5: a significant but tiny rise on huge
  traffic is not news), infinite when the previous version had none,
* at least ``min_errors`` errors (default 5) in the current version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import bdtrc

__all__ = ["ErrorCount", "ErrorRateChange", "compare_error_rates", "error_increase_p_values"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorCount:
    errors: int
    exposure: float  # requests (or seconds) over which the errors were counted


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRateChange:
    increased: bool
    current_rate: float
    previous_rate: float
    ratio: float  # current / previous; inf when the previous version had none, NaN when neither had any
    p_value: float
    reason: str


def error_increase_p_values(
    current_errors: np.ndarray,
    current_exposure: np.ndarray,
    previous_errors: np.ndarray,
    previous_exposure: np.ndarray,
) -> np.ndarray:
    """One-sided p-values of "the current rate is higher", element-wise (arrays broadcast)."""
    k1 = np.asarray(current_errors).astype(np.int64)
    k0 = np.asarray(previous_errors).astype(np.int64)
    t1 = np.asarray(current_exposure, dtype=np.float64)
    t0 = np.asarray(previous_exposure, dtype=np.float64)
    share = t1 / (t1 + t0)
    # P(X >= k1) = P(X > k1 - 1); bdtrc(k, n, p) is P(X > k).  No current errors: nothing to test.
    p = bdtrc(np.maximum(k1 - 1, 0), k1 + k0, share)
    return np.where(k1 > 0, p, 1.0)


def _rate(count: ErrorCount, per: str) -> str:
    rate = count.errors / count.exposure
    if per:  # exposure in units of time ("s"): a rate per unit, not a share of requests
        return f"{count.errors} in {count.exposure:g} {per} ({rate:.3g}/{per})"
    return f"{count.errors} in {count.exposure:g} requests ({rate * 100:.3g} %)"


def compare_error_rates(
    current: ErrorCount,
    previous: ErrorCount,
    *,
    name: str = "errors",
    alpha: float = 0.01,
    min_ratio: float = 1.5,
    min_errors: int = 5,
    per: str = "",
    against: str = "previous version",
) -> ErrorRateChange:
    """Whether ``current`` has significantly more errors per exposure than ``previous`` (see the module doc).

    ``per`` names the exposure's unit when it is time ("s"); requests (the default) show rates as percentages.
    ``against`` names what ``previous`` counts, in the reason.
    """
    for label, count in (("current", current), ("previous", previous)):
        if count.errors < 0 or not (count.exposure > 0 and math.isfinite(count.exposure)):
            raise ValueError(f"{label}: errors ≥ 0 and a finite exposure > 0")
    current_rate = current.errors / current.exposure
    previous_rate = previous.errors / previous.exposure
    ratio = current_rate / previous_rate if previous_rate > 0 else math.inf if current_rate > 0 else math.nan
    p = float(
        error_increase_p_values(
            np.array(current.errors),
            np.array(current.exposure),
            np.array(previous.errors),
            np.array(previous.exposure),
        )
    )
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    ratio_text = "new" if math.isinf(ratio) else "no errors" if math.isnan(ratio) else f"{ratio:.2f}×"
    facts = f"{name}: {_rate(current, per)} vs {against} {_rate(previous, per)}, {ratio_text}, {p_text}"
    if current.errors < min_errors:
        verdict, increased = f"no alert (fewer than {min_errors} errors)", False
    elif p >= alpha:
        verdict, increased = f"no alert (not significant at {alpha:g})", False
    elif not ratio >= min_ratio:
        verdict, increased = f"no alert (significant, but below {min_ratio:g}×)", False
    else:
        verdict, increased = "alert: significantly higher", True
    return ErrorRateChange(
        increased=increased,
        current_rate=current_rate,
        previous_rate=previous_rate,
        ratio=ratio,
        p_value=p,
        reason=f"{facts} → {verdict}",
    )
