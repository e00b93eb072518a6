"""The server-drawn charts (`monitoring.charts`, pure): where the points land, one per interval, the scale."""

from monitoring.charts import HEIGHT, PAD, WIDTH, comparison_chart, sparkline


def points(line):
    return [tuple(map(float, p.split(","))) for p in line.points.split()]


def test_both_sides_share_one_scale_and_their_own_windows():
    canary = [[1000 + 10 * i, 0.05] for i in range(10)]
    baseline = [[500 + 10 * i, 0.01] for i in range(10)]  # measured before the rollout: a window of its own
    chart = comparison_chart(
        canary, baseline, canary_window=(1000, 1100), baseline_window=(500, 600), unit="%"
    )
    (cx, cy), (bx, by) = points(chart.canary)[0], points(chart.baseline)[0]
    assert cx == bx == PAD  # each at the start of its own window
    assert cy == PAD and by > HEIGHT / 2  # 5 % at the top, 1 % near the bottom of a scale from 0
    assert (chart.top, chart.bottom) == ("5 %", "0 %")
    assert chart.canary.mean_y == cy and chart.baseline.mean_y == by


def test_one_point_per_interval_averages_the_targets_samples():
    # three targets push every 5 s, a little apart: one point per interval, their mean
    canary = [[1000 + 5 * i + t * 0.3, v] for i in range(8) for t, v in enumerate((0.0, 0.03, 0.06))]
    chart = comparison_chart(canary, [], canary_window=(1000, 1040), step=5)
    drawn = points(chart.canary)
    assert len(drawn) == 8 and chart.canary.count == 24
    assert len({y for _, y in drawn}) == 1  # every interval's mean is 3 %
    assert all(PAD <= x <= WIDTH - PAD for x, _ in drawn) and chart.baseline.count == 0


def test_many_values_are_drawn_with_few_points_and_gaps_are_skipped():
    values = [[i, float(i % 7)] for i in range(2000)] + [[2001, float("nan")], [2002, None]]
    chart = comparison_chart(values, values)
    assert len(points(chart.canary)) == 120 and chart.canary.count == 2000
    assert comparison_chart([], []).empty


def test_sparkline_bars_scale_to_the_busiest_bucket():
    spark = sparkline([0, 2, 0, 8], width=40, height=20)
    assert [b.x for b in spark.bars] == [10.0, 30.0] and spark.total == 10 and spark.peak == 8
    assert spark.bars[1].height == 19.0 and spark.bars[0].height == 4.8
    assert sparkline([0, 0]).bars == []
