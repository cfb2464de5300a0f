"""The geometry of the rate chart and the sparklines, from series of points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.charts import (
    PLOT_LEFT,
    PLOT_RIGHT,
    nice_ceiling,
    offset_label,
    rate_chart,
    segments,
    sparkline,
)
from reindexer.samples import Point

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float, processed: int, failed: int = 0, retries: int = 0) -> Point:
    return Point(T0 + timedelta(seconds=seconds), processed, failed, retries)


def vertices(points_attr: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in points_attr.split())]


# 0-10 s at 100/s, 10-20 s at 50/s with 3 failures, 20-40 s at 25/s with 4 retries.
SERIES = [at(0, 0), at(10, 1000), at(20, 1500, failed=3), at(40, 2000, failed=3, retries=4)]


def test_rate_chart__draws_each_segments_average_rate_as_a_step() -> None:
    chart = rate_chart(SERIES, width=468, height=146)  # a plot 400 × 100 wide and tall
    left, right = PLOT_LEFT, 468 - PLOT_RIGHT
    assert (chart.left, chart.right, chart.plot_height) == (left, right, 100)
    assert chart.peak == 100
    top = chart.top
    assert vertices(chart.line) == [
        (left, top),
        (left + 100, top),
        (left + 100, top + 50),
        (left + 200, top + 50),
        (left + 200, top + 75),
        (right, top + 75),
    ]


def test_rate_chart__marks_failures_at_their_time_and_shades_the_retried_spans() -> None:
    chart = rate_chart(SERIES, width=468, height=146)
    assert [(m.x, m.failed, m.label) for m in chart.marks] == [(PLOT_LEFT + 200, 3, "0:20")]
    assert [(b.x, b.width, b.retries) for b in chart.bands] == [(PLOT_LEFT + 200, 200, 4)]
    assert (chart.failed, chart.retries) == (3, 4)


def test_rate_chart__shades_consecutive_retried_segments_as_one_band() -> None:
    series = [at(0, 0), at(10, 100, retries=1), at(20, 200, retries=3), at(30, 300, retries=3)]
    series.append(at(40, 400, retries=5))
    chart = rate_chart(series, width=468, height=146)
    assert [(b.x, b.width, b.retries) for b in chart.bands] == [
        (PLOT_LEFT, 200, 3),
        (PLOT_LEFT + 300, 100, 2),
    ]


def test_rate_chart__labels_its_axes_with_round_rates_and_times_since_the_start() -> None:
    chart = rate_chart([at(0, 0), at(3600, 330_000)])
    assert [t.label for t in chart.y_ticks] == ["0", "50", "100"]
    assert [t.label for t in chart.x_ticks] == ["0:00", "15:00", "30:00", "45:00", "1:00:00"]


def test_rate_chart__of_fewer_than_two_moments_is_empty() -> None:
    assert rate_chart([]).empty
    assert rate_chart([at(0, 0)]).empty
    assert rate_chart([at(5, 0), at(5, 10)]).empty  # no time between them: no rate


def test_segments__skip_pairs_at_the_same_moment() -> None:
    parts = segments([at(0, 0), at(0, 5), at(10, 105)])
    assert [(p.seconds, p.rate) for p in parts] == [(10.0, 10.0)]


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (180, 200), (2100, 2500)]
)
def test_nice_ceiling__rounds_up_to_1_2_2_5_or_5_times_a_power_of_ten(
    value: float, ceiling: float
) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_offset_label__shows_hours_only_when_there_are_some() -> None:
    assert [offset_label(s) for s in (0, 65, 3725)] == ["0:00", "1:05", "1:02:05"]


def test_sparkline__scales_the_recent_rate_to_its_own_box() -> None:
    spark = sparkline([at(0, 0), at(10, 1000), at(20, 1500)], rate_now=42.0, width=80, height=20)
    assert vertices(spark.line) == [(0, 1), (40, 1), (40, 10), (80, 10)]
    assert spark.rate_now == 42.0
    assert sparkline([at(0, 0)], rate_now=None).empty
