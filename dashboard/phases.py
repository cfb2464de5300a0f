"""A job's phases as the detail page's step list: each phase's start, end, duration and progress.

Read in one query (the job's JobPhase rows); the writing phase's progress comes from the job's
own counters, the others' from what the phase reported (a store's index build, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from reindexer.models import JobPhase, JobStatus, Phase, ReindexJob


@dataclass(frozen=True)
class PhaseStep:
    """One row of the step list."""

    name: str
    label: str
    started_at: datetime
    # None while the phase runs (or waits for a worker, after a hand-back).
    ended_at: datetime | None
    # "running", "done" or "waiting" (its job was handed back and waits for a worker).
    state: str
    duration: float | None
    done: int | None
    total: int | None
    detail: str

    @property
    def percent(self) -> int | None:
        if not self.total or self.done is None:
            return None
        return round(min(1.0, self.done / self.total) * 100)


def phase_steps(job: ReindexJob, now: datetime | None = None) -> list[PhaseStep]:
    """The job's phases in the order they began (one query)."""
    now = now or timezone.now()
    return [_step(job, row, now) for row in JobPhase.objects.filter(job=job)]


def _step(job: ReindexJob, row: JobPhase, now: datetime) -> PhaseStep:
    ended_at = row.finished_at
    if ended_at is None and job.is_finished:
        # A job failed in place on a full database may have had no room to close its phase.
        ended_at = job.finished_at
    if ended_at is not None:
        state, duration = "done", max(0.0, (ended_at - row.started_at).total_seconds())
    elif job.status == JobStatus.RUNNING:
        state, duration = "running", row.duration_seconds(now)
    else:
        state, duration = "waiting", None
    done, total = row.done, row.total
    if row.name == Phase.WRITING:
        done, total = job.processed_docs, job.total_docs
    elif row.name == Phase.COUNTING and state == "done":
        done = total = job.total_docs
    return PhaseStep(
        name=row.name,
        label=Phase(row.name).label,
        started_at=row.started_at,
        ended_at=ended_at,
        state=state,
        duration=duration,
        done=done,
        total=total,
        detail=row.detail,
    )
