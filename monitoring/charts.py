"""Charts drawn on the server as SVG geometry: no chart library, no script, no inline style (the CSP refuses it).

Pure: numbers in, coordinates and labels out; the templates draw them with `<polyline>`/`<rect>` and style them with
classes. A chart is small (at most `MAX_POINTS` points a line), whatever the number of values stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from monitoring.judge import format_value

MAX_POINTS = 120
WIDTH = 320
HEIGHT = 96
PAD = 4  # room for the stroke at the edges


@dataclass(frozen=True, slots=True)
class Line:
    points: str  # "x,y x,y …" for a <polyline>
    mean_y: float | None  # where the mean's dashed line goes
    count: int


@dataclass(frozen=True, slots=True)
class ComparisonChart:
    """Canary and baseline over their windows (each side's time as a share of its own window), on one y scale."""

    canary: Line
    baseline: Line
    top: str  # the y axis' labels, formatted with the metric's unit
    bottom: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not (self.canary.count or self.baseline.count)


def _finite(pairs: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    out = []
    for pair in pairs or ():
        try:
            t, v = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            out.append((t, v))
    out.sort()
    return out


def _per_step(pairs: list[tuple[float, float]], start: float, step: float) -> list[tuple[float, float]]:
    """One point per `step` seconds from `start`: the mean of the values measured then (several targets' samples
    of one interval make one point, not a vertical zig-zag)."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for t, v in pairs:
        bins.setdefault(math.floor((t - start) / step), []).append((t, v))
    return [
        (sum(t for t, _ in chunk) / len(chunk), sum(v for _, v in chunk) / len(chunk))
        for _, chunk in sorted(bins.items())
    ]


def _bucketed(pairs: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points: the mean time and value of consecutive runs of equal size."""
    if len(pairs) <= limit:
        return pairs
    out = []
    for i in range(limit):
        chunk = pairs[i * len(pairs) // limit : (i + 1) * len(pairs) // limit]
        out.append((sum(t for t, _ in chunk) / len(chunk), sum(v for _, v in chunk) / len(chunk)))
    return out


def comparison_chart(
    canary_values: Sequence[Sequence[float]],
    baseline_values: Sequence[Sequence[float]],
    *,
    canary_window: tuple[float, float] | None = None,
    baseline_window: tuple[float, float] | None = None,
    unit: str = "",
    step: float | None = None,
    max_points: int = MAX_POINTS,
) -> ComparisonChart:
    """`[epoch seconds, value]` pairs of each side; windows as epoch seconds (default: each side's first to last).

    With `step` (the template's interval), each side's line has one point per step: the mean of that interval's
    values (the y scale fits what is drawn; the dashed means are of all values)."""
    sides = []
    for pairs, window in (
        (_finite(canary_values), canary_window),
        (_finite(baseline_values), baseline_window),
    ):
        if not pairs:
            sides.append((pairs, (0.0, 1.0), []))
            continue
        start, end = window if window and window[1] > window[0] else (pairs[0][0], pairs[-1][0])
        drawn = _bucketed(_per_step(pairs, start, step) if step and step > 0 else pairs, max_points)
        sides.append((pairs, (start, end), drawn))
    values = [v for _, _, drawn in sides for _, v in drawn]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low >= 0 and high > 0 and low <= high / 2:
        low = 0.0  # counts and ratios read best from zero
    if high - low < 1e-12:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)

    def y(value: float) -> float:
        return round(HEIGHT - PAD - (value - low) / (high - low) * (HEIGHT - 2 * PAD), 1)

    def line(pairs: list[tuple[float, float]], window: tuple[float, float], drawn: list) -> Line:
        if not pairs:
            return Line("", None, 0)
        start, end = window
        span = end - start or 1.0
        points = " ".join(
            f"{round(PAD + min(max((t - start) / span, 0.0), 1.0) * (WIDTH - 2 * PAD), 1)},{y(v)}"
            for t, v in drawn
        )
        if len(drawn) == 1:  # a single point still shows: a short flat line
            x, yy = points.split(",")
            points = f"{float(x) - 2},{yy} {float(x) + 2},{yy}"
        mean = min(max(sum(v for _, v in pairs) / len(pairs), low), high)
        return Line(points, y(mean), len(pairs))

    return ComparisonChart(
        canary=line(*sides[0]),
        baseline=line(*sides[1]),
        top=format_value(high, unit),
        bottom=format_value(low, unit),
    )


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Sparkline:
    bars: list[Bar]
    total: int
    peak: int
    width: int
    height: int
    bar_width: float


def sparkline(counts: Sequence[int], *, width: int = 120, height: int = 24) -> Sparkline:
    """A bar per bucket (oldest first), scaled to the busiest; an empty bucket draws nothing."""
    counts = [max(int(c), 0) for c in counts]
    peak = max(counts, default=0)
    slot = width / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        if count:
            h = max(round(count / peak * (height - 1), 1), 1.0)
            bars.append(Bar(x=round(i * slot, 2), y=round(height - h, 1), height=h))
    return Sparkline(bars, sum(counts), peak, width, height, round(max(slot - 0.5, 0.5), 2))
