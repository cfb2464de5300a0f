"""Sliced jobs: a job's source split into slices that workers run in parallel.

Each slice is a job of its own (`parent` set), claimed, leased, checkpointed and resumed alone,
while the sliced job holds the collection (one writer) and sums their counters. The sliced job
ends once its last slice has ended: the worker that ended that slice takes the sliced job over
to finish it (its index build, its final state); should that worker die first, the sliced job's
lease expires and any worker claims it to do the same.
"""

from __future__ import annotations

import contextlib
import uuid

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Now

from reindexer.models import (
    EventKind,
    InvalidTransition,
    JobStatus,
    LeaseLost,
    ReindexJob,
    storable,
)
from reindexer.sources.base import SourceSlice
from reindexer.specs import NAME_MAX
from reindexer.wakeup import notify_workers


def slice_name(job: ReindexJob, number: int, count: int) -> str:
    suffix = f" [slice {number}/{count}]"
    return job.name[: NAME_MAX - len(suffix)] + suffix


def create_slices(
    job: ReindexJob, token: uuid.UUID, actor: str, parts: list[SourceSlice]
) -> list[ReindexJob]:
    """Create `job`'s slices, pending, in one transaction fenced by `job`'s lease.

    The slices take the sliced job's place in the queue (its `created_at`), so they run before
    jobs queued after it. Raises LeaseLost, creating nothing, if `token` no longer holds it.
    """
    with transaction.atomic():
        locked = ReindexJob.objects.select_for_update().leased(job.pk, token).first()
        if locked is None:
            raise LeaseLost(f"job {job.pk}: lease lost before its slices were created")
        if locked.cancel_requested_at is not None:
            # Asked to cancel while its source was being split: no slice may start. Read under
            # the row lock, so a cancel request either comes before this or finds the slices.
            return []
        slices = ReindexJob.objects.bulk_create(
            ReindexJob(
                **job.spec_copy(),
                name=slice_name(job, number, len(parts)),
                parent=job,
                slice_number=number,
                slice_bounds=part.bounds,
                total_docs=part.count,
                dimensions=job.dimensions,
                created_by_id=job.created_by_id,
                trace_context=job.trace_context,
                created_at=job.created_at,
            )
            for number, part in enumerate(parts, start=1)
        )
        # Stamped by the database's clock, as the relay compares it with the other writes.
        ReindexJob.objects.filter(parent=job).update(updated_at=Now())
        total = sum(part.count for part in parts)
        ReindexJob.objects.leased(job.pk, token).update(
            total_docs=total, worker="", heartbeat_at=Now(), updated_at=Now()
        )
        job.total_docs, job.worker = total, ""
        counts = ", ".join(str(part.count) for part in parts)
        job.log(EventKind.SLICED, actor, f"split into {len(parts)} slices of {counts} records")
        notify_workers("sliced", job.pk)
        for slice_job in slices:
            slice_job.log(
                EventKind.CREATED,
                actor,
                f"slice {slice_job.slice_number} of {len(parts)} of job {job.pk}: "
                f"{slice_job.total_docs} records",
            )
    return slices


def release(job: ReindexJob, token: uuid.UUID) -> None:
    """Leave a sliced job to its slices: it keeps the collection, and no worker holds it."""
    if ReindexJob.objects.leased(job.pk, token).update(worker="", updated_at=Now()) != 1:
        raise LeaseLost(f"job {job.pk}: lease lost")
    job.worker = ""
    notify_workers("released", job.pk)  # its reopened slices may now be claimed


def take_over(parent_id: int, worker: str) -> tuple[ReindexJob, uuid.UUID] | None:
    """Hold the sliced job `parent_id` once none of its slices is active, to finish it.

    None if a slice is still active, the job has ended, or another worker took it first.
    """
    parent = ReindexJob.objects.filter(pk=parent_id, status=JobStatus.RUNNING).first()
    if parent is None:
        return None
    token = uuid.uuid4()
    active = ReindexJob.objects.active().filter(parent=OuterRef("pk"))
    updated = (
        ReindexJob.objects.filter(
            pk=parent.pk, status=JobStatus.RUNNING, lease_token=parent.lease_token
        )
        .exclude(Exists(active))
        .update(lease_token=token, worker=worker, heartbeat_at=Now(), updated_at=Now())
    )
    if updated != 1:
        return None
    parent.refresh_from_db()
    parent.log(EventKind.CLAIMED, worker, "to finish it: its slices have all ended")
    return parent, token


def stop_whole_job(slice_job: ReindexJob, error: str, actor: str) -> None:
    """A slice failed (or the job's error budget ran out in it): the sliced job will fail with
    `error`, and its other slices stop at their next batch boundary."""
    if slice_job.parent_id is None:
        return
    cause = storable(f"slice {slice_job.slice_number}: {error}")
    # The first cause is the one the job fails with.
    ReindexJob.objects.filter(pk=slice_job.parent_id, status=JobStatus.RUNNING, error="").update(
        error=cause, updated_at=Now()
    )
    parent = ReindexJob.objects.get(pk=slice_job.parent_id)
    with contextlib.suppress(InvalidTransition):  # already cancelling, or ended
        parent.request_cancel(actor, reason=f"stopping every slice: {cause}")
