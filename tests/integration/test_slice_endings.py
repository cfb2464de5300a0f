"""How a sliced job and its slices end when operators and the sweep act on them, without workers:
through the real transitions, the real slicing functions and the real orphan sweep."""

from __future__ import annotations

import pytest

from reindexer import slicing
from reindexer.jobs import cancel_job, resume_job
from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.orphans import cancel_orphans
from reindexer.queue import waiting_for
from tests.dashboard.slices import MakeJob, end_slice, run_slice, sliced_job

pytestmark = pytest.mark.django_db


def statuses(job: ReindexJob) -> list[str]:
    return list(job.slice_jobs.order_by("slice_number").values_list("status", flat=True))


def failed_sliced_job(make_job: MakeJob) -> ReindexJob:
    """A sliced job that failed with its first slice, its other slices stopped before they ran."""
    job, slices = sliced_job(make_job, slices=3)
    first = run_slice(slices[0], "w1", processed=1)
    end_slice(first, JobStatus.FAILED, "store failed: disk full")
    slicing.stop_whole_job(first, "store failed: disk full", "w1")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    return job


def test_a_failed_slice__fails_its_job_with_the_slice_named_and_the_others_cancelled(
    make_job: MakeJob,
) -> None:
    job = failed_sliced_job(make_job)
    assert job.error == "slice 1: store failed: disk full"
    assert statuses(job) == ["failed", "cancelled", "cancelled"]


def test_resume_then_cancel_while_pending__cancels_its_reopened_slices_too(
    make_job: MakeJob,
) -> None:
    job = failed_sliced_job(make_job)
    resume_job(job)
    assert statuses(job) == ["pending", "pending", "pending"]

    cancel_job(job)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert statuses(job) == ["cancelled", "cancelled", "cancelled"]
    assert job.events.filter(kind=EventKind.CANCELLED, detail__contains="waited to resume").exists()


def test_the_sweep__ends_pending_slices_stranded_under_an_ended_job(make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job, slices=2)
    # An ended job with a slice still pending: what the transitions above no longer leave, but
    # a database restored from an older version might hold.
    ReindexJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, lease_token=None)

    assert cancel_orphans("sweeper", lease_seconds=30) == 2

    assert statuses(job) == ["cancelled", "cancelled"]
    assert slices[0].events.filter(detail__contains="its sliced job had ended").exists()


def test_a_pending_slice__waits_for_a_worker_not_for_its_own_job(make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job, slices=2)
    other = make_job(collection=job.collection)

    assert waiting_for(slices[0]) is None
    assert waiting_for(other) == job.pk
