"""Carries the worker's progress into this process's in-memory channel layer, by polling the DB.

Without Redis the worker's group sends never leave the worker process, so the web process watches
`ReindexJob.updated_at` (set by every write) and publishes `job.progress` itself. One task per
process and event loop: the first consumer starts it, the last one to leave stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

from channels import db as channels_db
from channels.layers import get_channel_layer
from django.utils import timezone

from reindexer import conf
from reindexer.models import ReindexJob
from reindexer.orphans import cancel_orphans
from reindexer.progress import announce, crosses_processes, send_job_message

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def database_sync_to_async(func: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
    """channels' `database_sync_to_async` (connections closed around the call), typed."""
    return cast(Callable[_P, Awaitable[_R]], channels_db.database_sync_to_async(func))


POLL_SECONDS = 0.1
# Rows are re-read this far behind the newest change seen, so that a row whose commit landed after
# a later-stamped one (commit order, clock steps) is still found; (id, updated_at) de-duplicates.
OVERLAP = timedelta(seconds=2)
MAX_ROWS_PER_POLL = 1000
PRIME_TIMEOUT = 5.0
# The web process looks for cancels that no worker is left to confirm at most this often.
ORPHAN_SWEEP_SECONDS = 5.0
ORPHAN_SWEEP_ACTOR = "dashboard"


def needed(layer: Any | None = None) -> bool:
    """Whether the relay must run: the layer does not carry messages between processes."""
    layer = get_channel_layer() if layer is None else layer
    return layer is not None and not crosses_processes(layer)


class OrphanSweep:
    """Ends the cancels no worker is left to confirm (reindexer.orphans), at most once every
    `interval` seconds however many loops ask: the relay's poll and the hub's tick both do, so
    that a job whose worker died while cancelling ends with or without Redis and workers."""

    def __init__(self, interval: float = ORPHAN_SWEEP_SECONDS) -> None:
        self.interval = interval
        self._last = -1e9

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

    async def run_if_due(self) -> list[int]:
        """The ids of the jobs it cancelled (none if it was not due)."""
        if not self.due():
            return []
        return await _sweep_orphans()


@database_sync_to_async
def _sweep_orphans() -> list[int]:
    lease_seconds = conf.get().lease_seconds
    # One cheap query on most sweeps: nothing to do.
    candidates = list(
        ReindexJob.objects.orphaned_cancels(lease_seconds).values_list("pk", flat=True)
    )
    if not candidates:
        return []
    cancel_orphans(ORPHAN_SWEEP_ACTOR, lease_seconds)
    ended = list(
        # Cancelled, or failed: a sliced job that a failed slice had stopped.
        ReindexJob.objects.filter(pk__in=candidates).finished().values_list("pk", "parent_id")
    )
    # A slice's sliced job too: it ends in the sweep's second pass once its slices have.
    changed = sorted({pk for pk, _ in ended} | {p for _, p in ended if p is not None})
    for job_id in changed:
        announce(job_id)  # other processes' pages, through Redis; the relay sees the rows here
    return changed


orphan_sweep = OrphanSweep()


class ChangeTracker:
    """Remembers which (id, updated_at) versions were published; pure bookkeeping, no I/O."""

    def __init__(self, since: datetime, overlap: timedelta = OVERLAP) -> None:
        self.newest = since
        self.overlap = overlap
        self._seen: dict[int, datetime] = {}

    @property
    def cutoff(self) -> datetime:
        return self.newest - self.overlap

    def changed(self, rows: list[tuple[int, datetime]]) -> list[int]:
        """The ids among `rows` (id, updated_at) whose version was not published yet."""
        fresh: list[int] = []
        for job_id, updated_at in rows:
            if self._seen.get(job_id) == updated_at:
                continue
            self._seen[job_id] = updated_at
            fresh.append(job_id)
            self.newest = max(self.newest, updated_at)
        cutoff = self.cutoff
        self._seen = {k: v for k, v in self._seen.items() if v > cutoff}
        return fresh


class Relay:
    """The per-process polling task, reference-counted by the consumers that need it."""

    def __init__(self, interval: float = POLL_SECONDS) -> None:
        self.interval = interval
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._primed: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def acquire(self) -> None:
        """Count a user in, starting the task if needed; returns once the task has taken stock of
        the rows already changed, which the caller then sends itself as its initial state."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            # Left behind on another (closed) loop, as when each test runs its own: start afresh.
            self._task, self._users = None, 0
        self._users += 1
        if self._task is None or self._task.done():
            self._primed = loop.create_future()
            self._task = loop.create_task(self._run(self._primed), name="reindexer-progress-relay")
            logger.info(
                "progress relay started (polling the database every %.0f ms)", self.interval * 1000
            )
        if self._primed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._primed), timeout=PRIME_TIMEOUT)

    async def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._task is not None:
            task, self._task = self._task, None
            if task.get_loop() is asyncio.get_running_loop() and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            logger.info("progress relay stopped")

    async def _run(self, primed: asyncio.Future[None]) -> None:
        layer = get_channel_layer()
        tracker = ChangeTracker(since=timezone.now())
        try:
            # What changed just before we started is in the consumers' initial state already.
            tracker.changed([row[:2] for row in await _changed_since(tracker.cutoff)])
        except Exception:
            logger.warning("progress relay: first poll failed", exc_info=True)
        finally:
            if not primed.done():
                primed.set_result(None)
        while True:
            await asyncio.sleep(self.interval)
            try:
                await orphan_sweep.run_if_due()  # its cancels show in this poll's rows
            except Exception:
                logger.warning("progress relay: orphaned-cancel sweep failed", exc_info=True)
            try:
                rows = await _changed_since(tracker.cutoff)
                parents = {job_id: parent for job_id, _, parent in rows if parent is not None}
                changed = tracker.changed([row[:2] for row in rows])
                # A slice's change shows on its sliced job's page too (its slices table).
                for job_id in dict.fromkeys(
                    [*changed, *(parents[j] for j in changed if j in parents)]
                ):
                    await send_job_message(layer, job_id)
            except Exception:
                # A locked or briefly unreachable database must not end live updates for good.
                logger.warning("progress relay: poll failed; retrying", exc_info=True)


@database_sync_to_async
def _changed_since(cutoff: datetime) -> list[tuple[int, datetime, int | None]]:
    """(id, updated_at, parent_id) of the rows changed after `cutoff`, oldest first."""
    rows = (
        ReindexJob.objects.filter(updated_at__gt=cutoff)
        .order_by("-updated_at", "-id")
        .values_list("id", "updated_at", "parent_id")[:MAX_ROWS_PER_POLL]
    )
    return list(reversed(rows))


relay = Relay()
