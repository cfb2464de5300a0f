"""Publishing job progress to the channel layer, from the synchronous worker.

Messages carry only the job id: consumers re-read the row and render it, so a lost or coalesced
message never leaves a stale number on screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from reindexer.throttle import TrailingThrottle
from reindexer.wakeup import notify_workers

logger = logging.getLogger(__name__)

JOBS_GROUP = "jobs"
PROGRESS_MESSAGE = "job.progress"


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def progress_message(job_id: int, *, stamp: str | None = None) -> dict[str, Any]:
    """A job's progress message; `stamp` names one publication sent to several groups, so that a
    process receiving it through more than one pushes it once."""
    message: dict[str, Any] = {"type": PROGRESS_MESSAGE, "job_id": job_id}
    if stamp is not None:
        message["stamp"] = stamp
    return message


def crosses_processes(layer: Any) -> bool:
    """Whether messages sent on `layer` reach other processes (Redis does, in-memory doesn't)."""
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


async def send_job_message(layer: Any, job_id: int) -> None:
    """Send `job_id`'s progress message to its own group (detail pages) and to the jobs list's."""
    message = progress_message(job_id, stamp=uuid.uuid4().hex)
    await layer.group_send(job_group(job_id), message)
    await layer.group_send(JOBS_GROUP, message)


def announce(job_id: int) -> None:
    """Tell open dashboards that an operator changed a job (queued it, asked it to cancel...).

    Sent once the surrounding transaction commits, so the consumers read the new row. Without a
    cross-process layer there is nothing to send: the web process's relay sees the row change.
    """
    notify_workers("changed", job_id)
    layer = get_channel_layer()
    if not crosses_processes(layer):
        return

    def send() -> None:
        try:
            async_to_sync(send_job_message)(layer, job_id)
        except Exception:
            logger.warning("could not announce the change of job %s", job_id, exc_info=True)

    transaction.on_commit(send)


class ProgressPublisher:
    """Fire-and-forget group sends on a private event loop, at most one per `min_interval` a job.

    Without a cross-process layer it publishes nothing; the dashboard's relay reads the database.
    """

    def __init__(self, min_interval: float = 0.1) -> None:
        self.min_interval = min_interval
        self._layer = get_channel_layer()
        self._enabled = crosses_processes(self._layer)
        # Only ever touched on the private loop, so the worker's threads never share its state.
        self._throttle: TrailingThrottle[int] = TrailingThrottle(min_interval)
        self._pending: list[Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        if self._enabled:
            self._loop = asyncio.new_event_loop()
            threading.Thread(
                target=self._loop.run_forever, name="progress-publisher", daemon=True
            ).start()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def publish(self, job_id: int, *, force: bool = False) -> None:
        """Send now, or, inside the window, once at its end: the last state always goes out."""
        if self._loop is None:
            return
        self._submit(self._throttle.submit(job_id, partial(self._send, job_id), force=force))

    def _submit(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None  # noqa: S101 - publish() returns early without a loop
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def _send(self, job_id: int) -> None:
        try:
            await send_job_message(self._layer, job_id)
        except Exception:
            # Progress is advisory: the row in the database stays the source of truth.
            logger.warning("could not publish progress of job %s", job_id, exc_info=True)

    def close(self, timeout: float = 2.0) -> None:
        if self._loop is None:
            return
        # The sends under way, then the trailing ones due; a timeout on shutdown only loses
        # advisory progress (failures were logged in _send).
        self._submit(self._throttle.drain())
        for future in self._pending:
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
        self._loop.call_soon_threadsafe(self._throttle.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None
