"""Cancels that no worker is left to confirm.

A job asked to cancel whose lease expired with no worker on it becomes cancelled, with an event
that says so, rather than waiting for a worker that may never come. Idle workers, the web
process's relay and `reindex status` all sweep for them, so it happens with or without workers.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.db.models.functions import Now

from reindexer.models import FINISHED_STATUSES, EventKind, InvalidTransition, JobStatus, ReindexJob
from reindexer.swaps.cutover import drop_built

logger = logging.getLogger(__name__)


def cancel_orphans(actor: str, lease_seconds: float) -> int:
    """Cancel the jobs asked to cancel whose lease expired with no worker left to confirm it
    (a sliced job once its slices are cancelled, so in a second pass); returns how many."""
    cancelled = 0
    while True:
        found = 0
        for job in ReindexJob.objects.orphaned_cancels(lease_seconds).order_by("id"):
            # A sliced job stopped by a failed slice fails with that slice's error.
            status, error = job.sliced_end_state() if job.is_sliced else ("", "")
            try:
                job.cancel_orphaned(
                    actor,
                    lease_seconds=lease_seconds,
                    error=error if status == JobStatus.FAILED else "",
                )
            except InvalidTransition:
                continue  # a worker came back, or the job ended, meanwhile
            found += 1
            logger.warning("job %s: %s without a worker (%s)", job.pk, job.status, actor)
            # A swap job's partial collection goes with it; the alias is left as it was.
            drop_built(job, actor, f"{job.status} without a worker")
        cancelled += found
        if not found:
            return cancelled + _cancel_stranded_slices(actor)


def _cancel_stranded_slices(actor: str) -> int:
    """Pending slices of a sliced job that has ended: nothing would ever claim them."""
    stranded = ReindexJob.objects.pending().filter(parent__status__in=FINISHED_STATUSES)
    ended = 0
    for slice_job in stranded.order_by("id"):
        try:
            slice_job._transition(
                JobStatus.CANCELLED, where=Q(status=JobStatus.PENDING), finished_at=Now()
            )
        except InvalidTransition:
            continue
        slice_job.log(EventKind.CANCELLED, actor, "cancelled: its sliced job had ended")
        ended += 1
    return ended
