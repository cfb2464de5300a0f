"""Sliced jobs for the dashboard, API and command tests: split as a worker splits them, through
the real slicing functions, then their slices claimed and moved as workers do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from reindexer import slicing
from reindexer.models import JobStatus, ReindexJob
from reindexer.sources import open_source

SPLITTER = "splitter"
MakeJob = Callable[..., ReindexJob]


def sliced_job(
    make_job: MakeJob, slices: int = 4, **spec: Any
) -> tuple[ReindexJob, list[ReindexJob]]:
    """A running sliced job split into its (pending) slices, as the worker that claimed it left
    it: no worker on it, its total the sum of its slices'."""
    job = make_job(status=JobStatus.RUNNING, total=None, slices=slices, **spec)
    assert job.lease_token is not None
    parts = open_source(job.source).split(slices)
    made = slicing.create_slices(job, job.lease_token, SPLITTER, parts)
    slicing.release(job, job.lease_token)
    job.refresh_from_db()
    return job, [ReindexJob.objects.get(pk=s.pk) for s in made]


def run_slice(
    slice_job: ReindexJob,
    worker: str,
    *,
    processed: int = 0,
    failed: int = 0,
    heartbeat_age: float = 1.0,
) -> ReindexJob:
    """Claim `slice_job` for `worker` and give it (and its sliced job) its counters, as its batch
    commits would."""
    slice_job.claim(worker, lease_seconds=30)
    ReindexJob.objects.filter(pk=slice_job.pk).update(
        processed_docs=processed,
        failed_docs=failed,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    assert slice_job.parent_id is not None
    parent = ReindexJob.objects.get(pk=slice_job.parent_id)
    ReindexJob.objects.filter(pk=parent.pk).update(
        processed_docs=parent.processed_docs + processed,
        failed_docs=parent.failed_docs + failed,
    )
    slice_job.refresh_from_db()
    return slice_job


def end_slice(slice_job: ReindexJob, status: str = JobStatus.COMPLETED, error: str = "") -> None:
    """End a running slice through its guarded transitions, as its worker would."""
    token = slice_job.lease_token
    assert token is not None
    if status == JobStatus.COMPLETED:
        slice_job.complete(token, slice_job.worker)
    elif status == JobStatus.FAILED:
        slice_job.fail(token, slice_job.worker, error)
    else:
        raise ValueError(status)
