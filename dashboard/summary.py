"""The figures of the tiles heading the jobs list: totals across every job, at one `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from reindexer import conf
from reindexer.models import JobStatus, ReindexJob
from reindexer.samples import current_rate, recent_points

FAILED_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Summary:
    running: int
    queued: int
    failed_recently: int
    rate_now: float  # docs/s over the last minute, summed over the running jobs
    oldest_heartbeat_age: float | None  # seconds, of the running job heard from longest ago
    oldest_heartbeat_stale: bool


def summary(now: datetime | None = None) -> Summary:
    """Four queries, each on an index, whatever the number of jobs: one aggregate over the whole
    table is a full scan (about 100 ms at 200k jobs)."""
    now = now or timezone.now()
    # Slices included: they record the samples and heartbeats of their sliced jobs, which are
    # counted once, as the jobs operators queued (a sliced job's own beat is its slices' commits).
    running = list(
        ReindexJob.objects.running().only(
            "pk", "status", "processed_docs", "heartbeat_at", "parent_id", "slices"
        )
    )
    queued = ReindexJob.objects.top_level().pending().count()
    failed = (
        ReindexJob.objects.top_level()
        .filter(status=JobStatus.FAILED, finished_at__gte=now - FAILED_WINDOW)
        .count()
    )
    # A sliced job's counters are its slices' sums: its slices carry its rate, counted once.
    rated = [job for job in running if not job.is_sliced]
    recent = recent_points(rated, now)
    rates = (current_rate(job, recent[job.pk], now) for job in rated)
    beats = [
        job.heartbeat_at for job in running if job.heartbeat_at is not None and not job.is_sliced
    ]
    oldest: datetime | None = min(beats, default=None)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return Summary(
        running=sum(1 for job in running if job.parent_id is None),
        queued=queued,
        failed_recently=failed,
        rate_now=sum(rate for rate in rates if rate is not None),
        oldest_heartbeat_age=age,
        oldest_heartbeat_stale=age is not None and age > conf.get().lease_seconds,
    )
