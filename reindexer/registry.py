"""The worker registry: one `WorkerProcess` row per worker id, renewed with its heartbeat.

Every write here is advisory. The registry tells operators which workers run; it holds no lease
and fences nothing, so a failed write is logged and never fails a job or stops a worker.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from reindexer.metrics.tally import BatchTally
from reindexer.models import ReindexJob, WorkerProcess

logger = logging.getLogger(__name__)

# Rows not renewed for this long are deleted, so the table holds recent workers only.
PRUNE_AFTER = timedelta(days=1)
# How often a long-running worker prunes (it also prunes when it starts).
PRUNE_EVERY_SECONDS = 3600.0


def _advisory(what: str, write: Callable[[], object]) -> bool:
    """Run a registry write; log and swallow any failure. Whether it went through."""
    try:
        write()
    except Exception as exc:
        logger.warning("worker registry: cannot %s: %s: %s", what, type(exc).__name__, exc)
        return False
    return True


# The batch tallies of the workers registered in this process, by name: each heartbeat writes
# its worker's (the lease keeper renews by name, from its own thread).
_tallies: dict[str, BatchTally] = {}


def _tallied(name: str) -> dict[str, Any]:
    tally = _tallies.get(name)
    return {"batch_seconds": tally.snapshot()} if tally is not None else {}


def renew(name: str, now: datetime | None = None) -> bool:
    """Renew the heartbeat of worker `name` (from the lease keeper's thread, among others)."""
    at = now or timezone.now()
    return _advisory(
        f"renew {name}",
        lambda: WorkerProcess.objects.filter(name=name).update(heartbeat_at=at, **_tallied(name)),
    )


def prune(now: datetime | None = None) -> bool:
    """Delete the rows of workers not seen for PRUNE_AFTER."""
    cutoff = (now or timezone.now()) - PRUNE_AFTER
    return _advisory(
        "prune", lambda: WorkerProcess.objects.filter(heartbeat_at__lt=cutoff).delete()
    )


class WorkerRegistration:
    """The registry row of one running worker process, kept by its claim loop."""

    def __init__(self, name: str, heartbeat_seconds: float) -> None:
        self.name = name
        self.heartbeat_seconds = heartbeat_seconds
        self.tally = BatchTally()
        self._beat_at = 0.0  # monotonic time of the last renewal
        self._pruned_at = 0.0

    def register(self) -> bool:
        """Create the row, or take over the row of an earlier process with this id."""
        now = timezone.now()
        prune(now)
        self._pruned_at = self._beat_at = time.monotonic()
        _tallies[self.name] = self.tally
        self.tally.connect()
        return _advisory(
            f"register {self.name}",
            lambda: WorkerProcess.objects.update_or_create(
                name=self.name,
                defaults={
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started_at": now,
                    "heartbeat_at": now,
                    "stopped_at": None,
                    "current_job": None,
                    "jobs_done": 0,
                    "batch_seconds": self.tally.snapshot(),
                },
            ),
        )

    def beat_if_due(self) -> None:
        """An idle wake-up: renew at the heartbeat interval, not at every poll."""
        clock = time.monotonic()
        if clock - self._beat_at < self.heartbeat_seconds:
            return
        self._beat_at = clock
        renew(self.name)
        if clock - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self._pruned_at = clock
            prune()

    def job_started(self, job: ReindexJob) -> None:
        self._beat_at = time.monotonic()
        _advisory(
            f"note {self.name} running job {job.pk}",
            lambda: WorkerProcess.objects.filter(name=self.name).update(
                current_job=job.pk, heartbeat_at=timezone.now()
            ),
        )

    def job_ended(self, *, finished: bool) -> None:
        """The job left this worker; `finished`: it ended here (not handed back or lost)."""
        self._beat_at = time.monotonic()
        done = F("jobs_done") + 1 if finished else F("jobs_done")
        _advisory(
            f"note {self.name} done with its job",
            lambda: WorkerProcess.objects.filter(name=self.name).update(
                current_job=None,
                jobs_done=done,
                heartbeat_at=timezone.now(),
                batch_seconds=self.tally.snapshot(),
            ),
        )

    def stopped(self) -> None:
        now = timezone.now()
        self.tally.disconnect()
        if _tallies.get(self.name) is self.tally:
            del _tallies[self.name]
        _advisory(
            f"note {self.name} stopped",
            lambda: WorkerProcess.objects.filter(name=self.name).update(
                current_job=None,
                stopped_at=now,
                heartbeat_at=now,
                batch_seconds=self.tally.snapshot(),
            ),
        )
