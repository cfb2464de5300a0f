"""A job's progress over time (JobSample rows), recorded by the engine after its batch commits.

The series stays small however long the job runs: a sample at most every SAMPLE_INTERVAL (and one
at once when failures or retries appear, so that the chart marks them where they happened), and,
past MAX_SAMPLES, a thinning that keeps the newest RECENT_KEPT samples as they are (the current
rate and the sparklines read them) and the older ones on an even time grid, coarser each time.

Samples are advisory: a failed write is logged and the job goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone

from reindexer.models import JobSample, JobStatus, ReindexJob

SAMPLE_INTERVAL = timedelta(seconds=5)
# A batch that saw failures or retries is sampled at once, but not more often than this.
EVENT_INTERVAL = timedelta(seconds=1)
MAX_SAMPLES = 400
RECENT_KEPT = 120  # ten minutes at SAMPLE_INTERVAL: the sparkline's and current rate's window
# The current rate is the rate over the last minute; the recent samples read to compute it reach
# back far enough to find one from before that minute.
CURRENT_RATE_WINDOW = timedelta(seconds=60)
RECENT_WINDOW = timedelta(minutes=5)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """A job's counters at a moment: a sample, or the job row itself."""

    at: datetime
    processed: int
    failed: int
    retries: int


def end_point(job: ReindexJob) -> Point | None:
    """What the job row says of its last moment: its final counters when it finished, or those
    of its last heartbeat (the row is current at every beat) while it runs."""
    at = job.finished_at or job.heartbeat_at
    if at is None:
        return None
    return Point(at, job.processed_docs, job.failed_docs, job.retries)


def with_end(points: Sequence[Point], job: ReindexJob) -> list[Point]:
    """The samples followed by the job row's own point, when that is newer."""
    series = list(points)
    end = end_point(job)
    if end is not None and (not series or end.at > series[-1].at):
        series.append(end)
    return series


class JobSampler:
    """Records at most a sample per interval for one job, thinning the series as it grows.

    A sampler of a resumed or reclaimed job (another worker, a new process) carries on the same
    series: it reads the series' size and last point once, and marks the restart with a sample."""

    def __init__(self, job: ReindexJob, now: datetime | None = None) -> None:
        self.job = job
        self._count = 0
        self._last: Point | None = None
        try:
            self._count = JobSample.objects.filter(job_id=job.pk).count()
            self._record(job, now or timezone.now())
        except DatabaseError:
            logger.warning("job %s: could not start its samples", job.pk, exc_info=True)

    def note(self, job: ReindexJob, now: datetime | None = None) -> None:
        """After a batch commit: record a sample if one is due."""
        now = now or timezone.now()
        if not self._due(job, now):
            return
        try:
            self._record(job, now)
            if self._count > MAX_SAMPLES:
                self._count = thin(job.pk)
        except DatabaseError:
            # Advisory: the job's own commit went through; the next due sample tries again.
            logger.warning("job %s: could not record a sample", job.pk, exc_info=True)

    def _due(self, job: ReindexJob, now: datetime) -> bool:
        last = self._last
        if last is None:
            return True
        since = now - last.at
        if since >= SAMPLE_INTERVAL:
            return True
        news = job.failed_docs > last.failed or job.retries > last.retries
        return news and since >= EVENT_INTERVAL

    def _record(self, job: ReindexJob, now: datetime) -> None:
        point = Point(now, job.processed_docs, job.failed_docs, job.retries)
        # A savepoint, should a caller hold a transaction: a failed insert must not break it.
        with transaction.atomic():
            JobSample.objects.create(
                job_id=job.pk,
                at=point.at,
                processed=point.processed,
                failed=point.failed,
                retries=point.retries,
            )
        self._last = point
        self._count += 1


def thin(job_id: int) -> int:
    """Drop samples of the job's series until it is back within bounds; return its new size."""
    rows = list(
        JobSample.objects.filter(job_id=job_id).order_by("at", "pk").values_list("pk", "at")
    )
    dropped = thinned([at for _, at in rows])
    if dropped:
        JobSample.objects.filter(pk__in=[rows[i][0] for i in dropped]).delete()
    return len(rows) - len(dropped)


def thinned(times: Sequence[datetime]) -> list[int]:
    """The indexes of the samples to drop from a series (times in order): the first and the newest
    RECENT_KEPT stay; the others keep the first sample of each cell of a time grid from the first.

    The grid's step is the smallest SAMPLE_INTERVAL × 2^k that cuts the older part's span into at
    most half of what is left of MAX_SAMPLES: it only grows with the span, and the cells of a grid
    nest in those of the next, so the older part stays evenly spread however often it is thinned
    (a step chosen by the count instead would leave the oldest part coarser than the rest).
    """
    old = range(1, max(1, len(times) - RECENT_KEPT))
    if len(times) <= MAX_SAMPLES or not old:
        return []
    budget = (MAX_SAMPLES - RECENT_KEPT) // 2
    start = times[0]
    span = times[old[-1]] - start
    step = SAMPLE_INTERVAL
    while span // step + 1 > budget:
        step *= 2
    kept = _first_per_cell(times, old, start, step)
    return [i for i in old if i not in kept]


def _first_per_cell(
    times: Sequence[datetime], indexes: Iterable[int], start: datetime, step: timedelta
) -> set[int]:
    kept: set[int] = set()
    seen: set[int] = set()
    for i in indexes:
        cell = (times[i] - start) // step
        if cell not in seen:
            seen.add(cell)
            kept.add(i)
    return kept


# -- reading -----------------------------------------------------------------------------------


def series(job: ReindexJob) -> list[Point]:
    """The job's whole series, ended by the job row's own point (at most MAX_SAMPLES + 1)."""
    rows = JobSample.objects.filter(job_id=job.pk).order_by("at", "pk")
    # Tuples, not model instances: a third of the chart's render time otherwise.
    fields = rows.values_list("at", "processed", "failed", "retries")
    return with_end([Point(*row) for row in fields], job)


def recent_points(jobs: Iterable[ReindexJob], now: datetime) -> dict[int, list[Point]]:
    """The samples of the last RECENT_WINDOW of every running job given, in one query."""
    ids = [job.pk for job in jobs if job.status == JobStatus.RUNNING]
    points: dict[int, list[Point]] = {pk: [] for pk in ids}
    if not ids:
        return points
    rows = JobSample.objects.filter(job_id__in=ids, at__gte=now - RECENT_WINDOW).order_by(
        "job_id", "at", "pk"
    )
    fields = rows.values_list("job_id", "at", "processed", "failed", "retries")
    for job_id, at, processed, failed, retries in fields:
        points[job_id].append(Point(at, processed, failed, retries))
    return points


def current_rate(job: ReindexJob, recent: Sequence[Point], now: datetime) -> float | None:
    """Documents per second over the last minute, of a running job; None when not running, or
    when no sample tells (none in the recent window: nothing committed for minutes).

    From the job row now back to the newest sample at least a minute old, or the oldest one there
    is when the series is younger than that."""
    if job.status != JobStatus.RUNNING or not recent:
        return None
    start = now - CURRENT_RATE_WINDOW
    older = [p for p in recent if p.at <= start]
    base = older[-1] if older else recent[0]
    seconds = (now - base.at).total_seconds()
    if seconds <= 0:
        return None
    return max(0.0, (job.processed_docs - base.processed) / seconds)
