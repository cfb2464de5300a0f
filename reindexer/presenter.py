"""The one view of a job's figures, for every surface: the command line, the JSON API, the pages,
the websocket pushes and the admin. Each figure is computed here once, at one `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from django.utils import timezone

from reindexer import conf
from reindexer.jobs import limit_text, retryable_failures
from reindexer.models import JobMode, JobStatus, Phase, ReindexJob
from reindexer.samples import current_rate, recent_points

ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})


def status_label(job: ReindexJob) -> str:
    """How the UI names the state: 'cancelling' and 'completed with errors' included."""
    if job.is_cancelling:
        return "cancelling"
    if job.status == JobStatus.COMPLETED and job.failed_docs:
        return "completed with errors"
    if job.status == JobStatus.AWAITING_APPROVAL:
        return "awaiting approval"
    return str(job.status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


@dataclass(frozen=True)
class JobView:
    """A job's derived figures at one moment."""

    job: ReindexJob
    now: datetime
    lease_seconds: float

    @property
    def label(self) -> str:
        return status_label(self.job)

    @property
    def badge(self) -> str:
        """The label as a CSS class."""
        return self.label.replace(" ", "-")

    @property
    def progress(self) -> float:
        return self.job.progress

    @property
    def indexing(self) -> bool:
        """Every document written, the store still building its search index: written is not
        yet searchable, so the pages say so rather than only "100%"."""
        return self.job.status == JobStatus.RUNNING and self.job.phase == Phase.INDEXING

    @property
    def percent(self) -> int:
        return round(self.job.progress * 100)

    @property
    def rate(self) -> float | None:
        """Documents per second since the start, cumulative."""
        return self.job.docs_per_second(self.now)

    @cached_property
    def rate_now(self) -> float | None:
        """Documents per second over the last minute, while running (one query, on demand: the
        jobs list reads every row's in one, through its sparkline tag)."""
        if self.job.status != JobStatus.RUNNING:
            return None
        recent = recent_points([self.job], self.now)[self.job.pk]
        return current_rate(self.job, recent, self.now)

    @cached_property
    def limit(self) -> float | None:
        """The rate limit the job runs under, in documents per second; None for none. A slice
        runs under its sliced job's (one query, for a slice's own page only)."""
        job = self.job
        if job.parent_id is None:
            return job.max_docs_per_second
        return (
            ReindexJob.objects.filter(pk=job.parent_id)
            .values_list("max_docs_per_second", flat=True)
            .first()
        )

    @property
    def limit_text(self) -> str:
        """The limit as the pages and the command line show it ("200", "12.5"); "" for none."""
        return limit_text(self.limit) if self.limit is not None else ""

    @property
    def can_throttle(self) -> bool:
        """Whether the limit can still change: a pending or running job not being cancelled."""
        return self.can_cancel

    @property
    def eta(self) -> float | None:
        """Unknown while stalled: the rate since the start would keep counting down."""
        return None if self.stalled else self.job.eta_seconds(self.now)

    @property
    def elapsed(self) -> float | None:
        return self.job.elapsed_seconds(self.now)

    @property
    def heartbeat_age(self) -> float | None:
        """Seconds since the worker's last beat; None once finished, when it says nothing. A
        sliced job's workers are its running slices': the freshest beat among them."""
        if self.job.is_finished:
            return None
        ages = [v.heartbeat_age for v in self.running_slices]
        known = [age for age in ages if age is not None]
        return min(known) if known else self.job.heartbeat_age(self.now)

    @property
    def stalled(self) -> bool:
        """No worker renews the lease. A sliced job whose slices are still active is stalled only
        when every one of them is running with an expired lease (a pending slice waits for a
        worker, it is not stalled)."""
        active = self.active_slices
        if active:
            return all(view.stalled for view in active)
        return self.job.is_stalled(self.lease_seconds, self.now)

    # -- slices ------------------------------------------------------------------------------

    @cached_property
    def slice_views(self) -> list[JobView]:
        """Each slice's own view, in slice order (prefetched by lists: no query per row)."""
        return [JobView(s, self.now, self.lease_seconds) for s in self.slices()]

    @property
    def active_slices(self) -> list[JobView]:
        if self.job.status != JobStatus.RUNNING:
            return []
        return [v for v in self.slice_views if v.job.status in ACTIVE_STATUSES]

    @property
    def running_slices(self) -> list[JobView]:
        return [v for v in self.active_slices if v.job.status == JobStatus.RUNNING]

    @property
    def awaiting_split(self) -> bool:
        """A sliced job whose source is not split yet: it will run as `job.slices` slices."""
        return self.job.is_sliced and not self.slice_views and not self.job.is_finished

    @property
    def slice_workers(self) -> list[str]:
        """The workers running the job's slices now, each once, in slice order."""
        return list(dict.fromkeys(v.job.worker for v in self.running_slices if v.job.worker))

    @property
    def can_cancel(self) -> bool:
        # Decided from the row alone, so a push costs no extra query; the action re-checks.
        job = self.job
        return job.status in (JobStatus.PENDING, JobStatus.RUNNING) and not job.is_cancelling

    @property
    def can_force_cancel(self) -> bool:
        """A running job whose lease expired: no worker is left to confirm a cancel."""
        return self.stalled

    @property
    def can_resume(self) -> bool:
        """A failed job continues from its checkpoint, with its counters (not a swap job: it
        dropped what it had built)."""
        return self.job.status == JobStatus.FAILED and self.job.mode != JobMode.SWAP

    @property
    def awaiting_approval(self) -> bool:
        """A swap job that verified its collection and waits for Swap or Discard."""
        return self.job.status == JobStatus.AWAITING_APPROVAL

    @property
    def can_approve(self) -> bool:
        return self.awaiting_approval

    @property
    def can_discard(self) -> bool:
        return self.awaiting_approval

    @property
    def can_rerun(self) -> bool:
        """A finished job can be queued again with its settings (prefilled in the form)."""
        return self.job.is_finished

    @cached_property
    def can_retry(self) -> bool:
        """Whether a retry would find failures to queue (malformed records never qualify).

        The counters rule most jobs out; only a finished job with failures costs one EXISTS
        query, and such a job is rarely pushed, since nothing changes it any more."""
        job = self.job
        if not (job.is_finished and job.failed_docs > 0):
            return False
        return retryable_failures(job).exists()

    @property
    def shows_last_error(self) -> bool:
        """Whether the last error adds to what the state says: not on a clean completion, and not
        when it merely repeats the final error."""
        job = self.job
        clean = job.status == JobStatus.COMPLETED and not job.failed_docs
        return bool(job.last_error) and not clean and job.last_error != job.error

    def as_status(self) -> dict[str, Any]:
        """The fields of `reindex status --json` and of the JSON API (DESIGN.md)."""
        job = self.job
        return {
            "id": job.pk,
            "name": job.name,
            "status": job.status,
            "label": self.label,
            "total_docs": job.total_docs,
            "processed_docs": job.processed_docs,
            "failed_docs": job.failed_docs,
            "skipped_docs": job.skipped_docs,
            "written_docs": job.written_docs,
            "progress": round(self.progress, 4),
            "batches_done": job.batches_done,
            "batches_failed": job.batches_failed,
            "retries": job.retries,
            "docs_per_second": _round(self.rate),
            "eta_seconds": _round(self.eta),
            "heartbeat_at": _iso(job.heartbeat_at),
            "heartbeat_age_seconds": _round(job.heartbeat_age(self.now)),
            "stalled": self.stalled,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "cancel_requested": job.cancel_requested_at is not None,
            "error": job.error,
            "last_error": job.last_error,
            "last_error_at": _iso(job.last_error_at),
            "source": job.source,
            "embedder": job.embedder,
            "store": job.store,
            "collection": job.collection,
            "batch_size": job.batch_size,
            "max_retries": job.max_retries,
            "max_failed_ratio": job.max_failed_ratio,
            "mode": job.mode,
            "cleanup": job.cleanup,
            "approve": job.approve,
            "verification": job.verification or None,
            "max_docs_per_second": job.max_docs_per_second,
            "worker": job.worker,
            "retry_of": job.retry_of_id,
            # "" until the job starts: null, as the other not-yet-known figures are.
            "phase": job.phase or None,
            "dimensions": job.dimensions,
            # Sliced jobs (DESIGN.md): the slices asked for, and each slice's own figures; a
            # slice names the job it is a slice of.
            "slice_count": job.slices,
            "slices": [self._slice_status(view) for view in self.slice_views],
            "slice_of": job.parent_id,
            "slice_number": job.slice_number,
        }

    def slices(self) -> list[ReindexJob]:
        """The job's slices in order (none unless it is sliced); prefetched by lists."""
        if not self.job.is_sliced:
            return []
        return sorted(self.job.slice_jobs.all(), key=lambda s: s.slice_number or 0)

    def _slice_status(self, view: JobView) -> dict[str, Any]:
        slice_job = view.job
        return {
            "id": slice_job.pk,
            "slice_number": slice_job.slice_number,
            "status": slice_job.status,
            "label": view.label,
            "worker": slice_job.worker,
            "total_docs": slice_job.total_docs,
            "processed_docs": slice_job.processed_docs,
            "failed_docs": slice_job.failed_docs,
            "skipped_docs": slice_job.skipped_docs,
            "progress": round(view.progress, 4),
            "batches_done": slice_job.batches_done,
            "batches_failed": slice_job.batches_failed,
            "retries": slice_job.retries,
            "docs_per_second": _round(view.rate),
            "eta_seconds": _round(view.eta),
            "heartbeat_at": _iso(slice_job.heartbeat_at),
            "started_at": _iso(slice_job.started_at),
            "finished_at": _iso(slice_job.finished_at),
            "error": slice_job.error,
        }


def present(job: ReindexJob, now: datetime | None = None) -> JobView:
    return JobView(job, now or timezone.now(), conf.get().lease_seconds)


def job_status(job: ReindexJob) -> dict[str, Any]:
    """`present(job).as_status()`: the status fields of one job, now."""
    return present(job).as_status()
