"""The geometry of a job's pictures, in SVG user units: the rate chart of its detail page and the
sparkline of its row. Markup lives in the templates; this only computes where things go.

A series of points (samples, then the job row) becomes segments, each with the average rate over
its span: drawn as a step line, so every step is a figure the samples really give.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reindexer.jobs import limit_text
from reindexer.samples import Point

CHART_WIDTH = 720
CHART_HEIGHT = 220
# The plot area inside the chart: room on the left for the rate labels, below for the times.
PLOT_LEFT = 56
PLOT_RIGHT = 12
PLOT_TOP = 12
PLOT_BOTTOM = 34
X_TICKS = 5

# A limit this many times above the peak rate would flatten the line if the axis reached it: it is
# drawn along the top edge instead, labelled as above the chart.
LIMIT_HEADROOM = 4

SPARK_WIDTH = 80
SPARK_HEIGHT = 20


@dataclass(frozen=True)
class Segment:
    """What happened between two consecutive points."""

    start: Point
    end: Point

    @property
    def seconds(self) -> float:
        return (self.end.at - self.start.at).total_seconds()

    @property
    def rate(self) -> float:
        return max(0, self.end.processed - self.start.processed) / self.seconds

    @property
    def failed(self) -> int:
        return max(0, self.end.failed - self.start.failed)

    @property
    def retries(self) -> int:
        return max(0, self.end.retries - self.start.retries)


def segments(points: Sequence[Point]) -> list[Segment]:
    """Consecutive pairs with time between them (a pair at one instant says nothing of a rate)."""
    return [Segment(a, b) for a, b in zip(points, points[1:], strict=False) if b.at > a.at]


@dataclass(frozen=True)
class Mark:
    """A failure mark on the time axis."""

    x: float
    failed: int
    offset: float  # seconds from the start, for its label

    @property
    def label(self) -> str:
        return offset_label(self.offset)


@dataclass(frozen=True)
class Band:
    """A shaded span of the plot where batches were retried."""

    x: float
    width: float
    retries: int


@dataclass(frozen=True)
class LimitLine:
    """The job's rate limit, a horizontal line across the plot with its label."""

    y: float
    rate: float
    off_scale: bool  # far above the peak: drawn at the top edge

    @property
    def label(self) -> str:
        return f"limit {limit_text(self.rate)}"


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class RateChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    line: str  # polyline points, "x,y x,y ..."
    area: str  # the same step line closed down to the axis, as polygon points
    marks: list[Mark]
    bands: list[Band]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    peak: float
    failed: int
    retries: int
    limit: LimitLine | None = None

    @property
    def empty(self) -> bool:
        return not self.line

    @property
    def limit_label_x(self) -> float:
        return self.right - 4

    @property
    def limit_label_y(self) -> float:
        """Just above the line, or just below it at the top edge, inside the plot either way."""
        if self.limit is None:
            return self.top
        return self.limit.y + 12 if self.limit.y - 4 < self.top + 8 else self.limit.y - 4

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top

    @property
    def y_label_x(self) -> float:
        return self.left - 6

    @property
    def x_label_y(self) -> float:
        return self.height - 12

    @property
    def mark_bottom(self) -> float:
        return self.bottom + 8


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above value (a round top for the rate axis)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power


def offset_label(seconds: float) -> str:
    """Time since the job's first point: 0:00, 4:05, 1:02:03."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _r(value: float) -> float:
    return round(value, 1)


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _steps(
    parts: Sequence[Segment], x_of: Callable[[Point], float], y_of: Callable[[float], float]
) -> list[tuple[float, float]]:
    vertices: list[tuple[float, float]] = []
    for part in parts:
        y = y_of(part.rate)
        vertices.append((x_of(part.start), y))
        vertices.append((x_of(part.end), y))
    return vertices


def _retried_spans(parts: Sequence[Segment]) -> list[tuple[Point, Point, int]]:
    """The spans of consecutive segments with retries, merged: one band each."""
    spans: list[tuple[Point, Point, int]] = []
    for part in parts:
        if not part.retries:
            continue
        if spans and spans[-1][1] == part.start:
            start, _, retries = spans[-1]
            spans[-1] = (start, part.end, retries + part.retries)
        else:
            spans.append((part.start, part.end, part.retries))
    return spans


def _points_attr(vertices: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in vertices)


def rate_chart(
    points: Sequence[Point],
    width: int = CHART_WIDTH,
    height: int = CHART_HEIGHT,
    *,
    limit: float | None = None,
) -> RateChart:
    """The docs/s of a series over time, with its failures marked, its retries shaded and its
    rate limit (docs/s, if any) drawn across; the rate axis reaches the limit unless it lies far
    above the peak."""
    left, right = float(PLOT_LEFT), float(width - PLOT_RIGHT)
    top, bottom = float(PLOT_TOP), float(height - PLOT_BOTTOM)
    parts = segments(points)
    if not parts:
        empty_limit = LimitLine(top, limit, off_scale=True) if limit else None
        return RateChart(
            width, height, left, right, top, bottom, "", "", [], [], [], [], 0, 0, 0, empty_limit
        )
    origin = parts[0].start.at
    span = max((parts[-1].end.at - origin).total_seconds(), 1e-9)
    peak = max(part.rate for part in parts)
    limit_on_scale = limit is not None and limit > 0 and limit <= LIMIT_HEADROOM * max(peak, 1.0)
    top_rate = nice_ceiling(max(peak, limit) if limit_on_scale and limit else peak)

    def x_of(point: Point) -> float:
        return left + (point.at - origin).total_seconds() / span * (right - left)

    def y_of(rate: float) -> float:
        return bottom - rate / top_rate * (bottom - top)

    vertices = _steps(parts, x_of, y_of)
    area = [(vertices[0][0], bottom), *vertices, (vertices[-1][0], bottom)]
    marks = [
        Mark(_r(x_of(p.end)), p.failed, (p.end.at - origin).total_seconds())
        for p in parts
        if p.failed
    ]
    bands = [
        Band(_r(x_of(start)), _r(x_of(end) - x_of(start)), retries)
        for start, end, retries in _retried_spans(parts)
    ]
    y_ticks = [Tick(_r(y_of(top_rate * f)), _fmt(top_rate * f)) for f in (0, 0.5, 1)]
    x_ticks = [
        Tick(_r(left + i / (X_TICKS - 1) * (right - left)), offset_label(span * i / (X_TICKS - 1)))
        for i in range(X_TICKS)
    ]
    line = None
    if limit is not None and limit > 0:
        y = _r(y_of(limit)) if limit_on_scale else top
        line = LimitLine(y, limit, off_scale=not limit_on_scale)
    return RateChart(
        width,
        height,
        left,
        right,
        top,
        bottom,
        _points_attr(vertices),
        _points_attr(area),
        marks,
        bands,
        y_ticks,
        x_ticks,
        peak,
        sum(p.failed for p in parts),
        sum(p.retries for p in parts),
        line,
    )


@dataclass(frozen=True)
class Sparkline:
    line: str
    width: int
    height: int
    rate_now: float | None

    @property
    def empty(self) -> bool:
        return not self.line


def sparkline(
    points: Sequence[Point],
    rate_now: float | None,
    width: int = SPARK_WIDTH,
    height: int = SPARK_HEIGHT,
) -> Sparkline:
    """A row's recent rate, as a step line scaled to its own peak (its shape, not its size)."""
    parts = segments(points)
    if not parts:
        return Sparkline("", width, height, rate_now)
    origin = parts[0].start.at
    span = max((parts[-1].end.at - origin).total_seconds(), 1e-9)
    peak = max(part.rate for part in parts) or 1.0
    inner = height - 2.0  # the stroke stays inside the box

    def x_of(point: Point) -> float:
        return (point.at - origin).total_seconds() / span * width

    def y_of(rate: float) -> float:
        return 1.0 + inner - rate / peak * inner

    return Sparkline(_points_attr(_steps(parts, x_of, y_of)), width, height, rate_now)
