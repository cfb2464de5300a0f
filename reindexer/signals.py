"""What the engine tells the rest of the worker (metrics, for one) as a job runs.

Receivers run in the worker's thread, inside the batch loop, so they must be quick and never
raise: the engine sends with `send_robust`, and a receiver's error is logged, not the job's.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent once a batch's checkpoint is committed, with `job` (the ReindexJob that ran it, a slice
# for a sliced job), `seconds` (embedding, where not done ahead, writing and committing it),
# `written`, `failed`, `skipped` (documents) and `retries` (made for this batch).
batch_committed = Signal()


def send_batch_committed(
    sender: object,
    *,
    job: object,
    seconds: float,
    written: int,
    failed: int,
    skipped: int,
    retries: int,
) -> None:
    for receiver, result in batch_committed.send_robust(
        sender,
        job=job,
        seconds=seconds,
        written=written,
        failed=failed,
        skipped=skipped,
        retries=retries,
    ):
        if isinstance(result, Exception):
            logger.error("batch_committed receiver %r failed: %s", receiver, result)
