"""Cancels that no worker is left to confirm.

A job asked to cancel whose lease expired with no worker on it becomes cancelled, with an event
that says so, rather than waiting for a worker that may never come. Idle workers, the web
process's relay and `reindex status` all sweep for them, so it happens with or without workers.
"""

from __future__ import annotations

import logging

from reindexer import slicing
from reindexer.models import InvalidTransition, JobStatus, ReindexJob

logger = logging.getLogger(__name__)


def cancel_orphans(actor: str, lease_seconds: float) -> int:
    """Cancel the jobs asked to cancel whose lease expired with no worker left to confirm it
    (a sliced job once its slices are cancelled, so in a second pass); returns how many."""
    cancelled = 0
    while True:
        found = 0
        for job in ReindexJob.objects.orphaned_cancels(lease_seconds).order_by("id"):
            # A sliced job stopped by a failed slice fails with that slice's error.
            status, error = slicing.end_state(job) if job.is_sliced else ("", "")
            try:
                job.cancel_orphaned(
                    actor,
                    lease_seconds=lease_seconds,
                    error=error if status == JobStatus.FAILED else "",
                )
            except InvalidTransition:
                continue  # a worker came back, or the job ended, meanwhile
            found += 1
            logger.warning("job %s: cancelled without a worker (%s)", job.pk, actor)
        cancelled += found
        if not found:
            return cancelled
