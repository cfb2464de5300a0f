"""Websocket consumers pushing rendered job rows to the dashboard (htmx ws extension, out of band).

A `job.progress` message carries only a job id: the consumer re-reads the row and renders the same
partials the pages use, so a coalesced or lost message never leaves a stale figure on screen. Each
socket sends only what its page shows (htmx logs an error for every element it cannot place): the
list gets rows, a detail page its panels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard import relay
from dashboard.live_status import (
    LAYER_ERRORS,
    RETRY_FIRST_SECONDS,
    next_delay,
    render_live_status,
)
from dashboard.partials import render_detail_push, render_jobs_refresh, render_list_push
from dashboard.relay import database_sync_to_async
from reindexer.models import ReindexJob
from reindexer.permissions import can_operate, can_view
from reindexer.progress import JOBS_GROUP, job_group
from reindexer.throttle import TrailingThrottle

# At most one push per job per socket in this many seconds (5 a second); the last state always
# follows, as one deferred push at the end of the window.
MIN_PUSH_INTERVAL = 0.2
# What a list socket sends on (re)connect: every active job, and the most recently changed others.
INITIAL_ACTIVE_LIMIT = 100
INITIAL_RECENT_LIMIT = 25
# A list socket remembers its last push per job; past this many jobs, the expired ones are dropped.
LAST_PUSH_MEMORY = 1000
# Every this many seconds a socket re-renders its running jobs: a dead worker writes nothing, so
# without the tick the heartbeat age would freeze on screen and "stalled" would never appear.
TICK_SECONDS = 5.0
TICK_TASK_PREFIX = "dashboard-tick-"

RECOVERY_TASK_PREFIX = "dashboard-layer-recovery-"

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]


class _JobPushConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Authenticates, joins groups, sends the current state, then coalesced pushes per job.

    The channel layer (Redis) may go away and come back: the socket then stays open, the page is
    told "live updates paused", and a background task re-joins the groups (a restarted Redis has
    forgotten them) and sends the current state with "live" once the layer answers again.
    """

    min_push_interval = MIN_PUSH_INTERVAL
    tick_seconds = TICK_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._throttle: TrailingThrottle[int] = TrailingThrottle(
            self.min_push_interval, memory=LAST_PUSH_MEMORY
        )
        self._tick: asyncio.Task[None] | None = None
        self._uses_relay = False
        self._can_operate = False
        self._connected = False
        self._layer_receive: Receive | None = None
        self._accepted = False
        self._paused = False
        self._recovery: asyncio.Task[None] | None = None

    # -- subclasses --------------------------------------------------------------------------

    async def resolve_groups(self) -> list[str] | None:
        """The groups to join, or None to refuse the socket."""
        raise NotImplementedError

    async def initial_state(self) -> tuple[list[int], str]:
        """The job ids and the HTML sent as soon as the socket opens."""
        raise NotImplementedError

    def wants(self, job_id: int) -> bool:
        return True

    async def running_job_ids(self) -> list[int]:
        """The running jobs this socket shows, re-rendered on every tick."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        may_view, self._can_operate = await self._permissions(user)
        if not may_view:
            await self.close()
            return
        groups = await self.resolve_groups()
        if groups is None:
            await self.close()
            return
        self.groups = groups  # left on disconnect (see websocket_disconnect)
        # Accepted even if the layer is away: the page still gets its state, and "paused".
        await self._join_groups()
        await self.accept()
        self._accepted = True
        if relay.needed(self.channel_layer):
            self._uses_relay = True
            await relay.relay.acquire()
        ids, html = await self.initial_state()
        for job_id in ids:
            self._throttle.note_sent(job_id)
        if self._paused:
            # A frame of its own: a <span> ahead of <tr> rows would make the parser drop the rows.
            await self.send(text_data=render_live_status(paused=True))
            self._start_recovery()
        if html:
            await self.send(text_data=html)
        self._tick = asyncio.create_task(
            self._tick_loop(), name=f"{TICK_TASK_PREFIX}{self.channel_name}"
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The server may cancel the consumer without a disconnect (its close timeout ran
            # out); the tick loops forever, so it must not outlive the consumer either way.
            self._stop_tick()
            self._stop_recovery()

    def _stop_tick(self) -> asyncio.Task[None] | None:
        tick, self._tick = self._tick, None
        if tick is not None:
            tick.cancel()
        return tick

    def _stop_recovery(self) -> asyncio.Task[None] | None:
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
        return recovery

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # The base class leaves the groups and lets a layer error escape; while the layer is
        # away, the groups' expiry drops this channel instead.
        groups, self.groups = self.groups, []
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except LAYER_ERRORS:
                logger.debug("could not leave %s: channel layer unreachable", group)
        await super().websocket_disconnect(message)

    async def disconnect(self, code: int) -> None:
        for task in (self._stop_tick(), self._stop_recovery()):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._throttle.close()
        if self._uses_relay:
            self._uses_relay = False
            await relay.relay.release()

    # -- the channel layer going away and coming back ----------------------------------------

    # channels' AsyncConsumer.__call__ sets `channel_receive` to the layer's receive and hands it
    # straight to its dispatch loop, where a layer error would end the socket with 1011; this
    # property hands that loop a receive that waits the outage out instead.
    @property
    def channel_receive(self) -> Receive:
        return self._receive_surviving_outages

    @channel_receive.setter
    def channel_receive(self, receive: Receive) -> None:
        self._layer_receive = receive

    async def _receive_surviving_outages(self) -> dict[str, Any]:
        if self._layer_receive is None:
            raise RuntimeError("no channel layer to receive from")
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                return await self._layer_receive()
            except LAYER_ERRORS as exc:
                await self._layer_lost(exc)
            await asyncio.sleep(delay)
            delay = next_delay(delay)

    async def _join_groups(self) -> bool:
        try:
            for group in self.groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except LAYER_ERRORS as exc:
            await self._layer_lost(exc)
            return False
        return True

    async def _layer_lost(self, exc: BaseException) -> None:
        if self._paused:
            logger.debug("channel layer still unreachable: %s", exc)
            return
        self._paused = True
        logger.warning("channel layer unreachable (%s); live updates paused, retrying", exc)
        if self._accepted:  # before, connect() sends the status and starts the recovery itself
            await self.send(text_data=render_live_status(paused=True))
            self._start_recovery()

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(
                self._recover(), name=f"{RECOVERY_TASK_PREFIX}{self.channel_name}"
            )

    async def _recover(self) -> None:
        """Re-join the groups until the layer answers, then send "live" and the current state."""
        delay = RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            delay = next_delay(delay)
            if not await self._join_groups():
                continue
            self._paused = False
            # What changed during the outage was published to nobody: catch up as on connect.
            try:
                ids, html = await self.initial_state()
            except Exception:
                # The database blinked too: stay "paused" on the page and try again.
                logger.warning("catching up after the layer returned failed", exc_info=True)
                self._paused = True
                continue
            if self._paused:
                continue  # lost again meanwhile (and "paused" sent): keep trying
            for job_id in ids:
                self._throttle.note_sent(job_id)
            logger.info("channel layer back; live updates resumed")
            await self.send(text_data=render_live_status(paused=False))
            if html:
                await self.send(text_data=html)
            return

    # -- messages ----------------------------------------------------------------------------

    async def job_progress(self, message: dict[str, Any]) -> None:
        job_id = int(message["job_id"])
        if self.wants(job_id):
            # A push deferred by the throttle renders the row as it is when the push is due.
            await self._throttle.submit(job_id, partial(self._push, job_id))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                for job_id in await self.running_job_ids():
                    # The coalescing path: a tick never adds a push beyond the rate limit.
                    await self.job_progress({"job_id": job_id})
            except Exception:
                # A failed tick (database briefly away) must not end the socket's ticks.
                logger.warning("periodic refresh failed", exc_info=True)

    async def _push(self, job_id: int) -> None:
        html = await self._render(job_id)
        if html:
            await self.send(text_data=html)

    # -- database ----------------------------------------------------------------------------

    def render(self, job: ReindexJob) -> str:
        raise NotImplementedError

    @database_sync_to_async
    def _permissions(self, user: Any) -> tuple[bool, bool]:
        """(may view jobs, may operate them), read once per socket."""
        return can_view(user), can_operate(user)

    @database_sync_to_async
    def _render(self, job_id: int) -> str | None:
        job = ReindexJob.objects.filter(pk=job_id).first()
        return self.render(job) if job is not None else None


class JobsConsumer(_JobPushConsumer):
    """`ws/jobs/`: every job's row, for the jobs list.

    A push can only replace a row the page already shows, so when a job appears (queued from the
    command line, the API or another tab) or changes state (which moves the tabs' counts), the
    push also asks the page to re-fetch its jobs panel.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statuses: dict[int, str] = {}

    async def resolve_groups(self) -> list[str] | None:
        return [JOBS_GROUP]

    async def initial_state(self) -> tuple[list[int], str]:
        return await self._recent_jobs()

    async def running_job_ids(self) -> list[int]:
        return await self._running_ids()

    @database_sync_to_async
    def _running_ids(self) -> list[int]:
        # Bounded like the initial state; a running job not shown yet asks for a panel refresh.
        jobs = ReindexJob.objects.running().order_by("-updated_at")
        return list(jobs.values_list("pk", flat=True)[:INITIAL_ACTIVE_LIMIT])

    def render(self, job: ReindexJob) -> str:
        row, refresh = self._row_and_refresh(job)
        return row + render_jobs_refresh() if refresh else row

    def _row_and_refresh(self, job: ReindexJob) -> tuple[str, bool]:
        """The job's row, and whether the page must re-fetch its panel."""
        known = self._statuses.get(job.pk)
        self._statuses[job.pk] = job.status
        if known is None and self._connected:
            # Not on the page yet (htmx would find no row to replace): the refresh brings it.
            return "", True
        return render_list_push(job, can_operate=self._can_operate), known not in (None, job.status)

    @database_sync_to_async
    def _recent_jobs(self) -> tuple[list[int], str]:
        active = list(ReindexJob.objects.active().order_by("-updated_at")[:INITIAL_ACTIVE_LIMIT])
        recent = list(
            ReindexJob.objects.exclude(pk__in=[job.pk for job in active]).order_by("-updated_at")[
                :INITIAL_RECENT_LIMIT
            ]
        )
        jobs = active + recent
        for job in jobs:
            self._statuses[job.pk] = job.status
        # Not the rows: the page was rendered before this socket opened, and a job queued in
        # between has no row there to replace. The panel, fetched again, is the catch-up.
        html = render_jobs_refresh() if jobs else ""
        self._connected = True  # from now on, a job not rendered yet is new to this page
        return [job.pk for job in jobs], html


class JobConsumer(_JobPushConsumer):
    """`ws/jobs/<id>/`: one job, for its detail page: every panel, so that it equals a reload.

    The progress block goes every time (its ages tick); the other panels only when they changed,
    so a user who paged through the failures stays there until a new failure arrives.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: dict[str, str] = {}

    @property
    def job_id(self) -> int:
        return int(self.scope["url_route"]["kwargs"]["job_id"])

    def wants(self, job_id: int) -> bool:
        return job_id == self.job_id

    async def resolve_groups(self) -> list[str] | None:
        if not await self._exists():
            return None
        return [job_group(self.job_id)]

    @database_sync_to_async
    def _exists(self) -> bool:
        return ReindexJob.objects.filter(pk=self.job_id).exists()

    async def running_job_ids(self) -> list[int]:
        return [self.job_id] if await self._is_running() else []

    @database_sync_to_async
    def _is_running(self) -> bool:
        return ReindexJob.objects.running().filter(pk=self.job_id).exists()

    async def initial_state(self) -> tuple[list[int], str]:
        html = await self._render(self.job_id)
        return ([self.job_id], html) if html else ([], "")

    def render(self, job: ReindexJob) -> str:
        push = render_detail_push(job, can_operate=self._can_operate)
        html = push.progress
        for name, panel in (
            ("settings", push.settings),
            ("timeline", push.timeline),
            ("failures", push.failures),
        ):
            if self._sent.get(name) != panel:
                self._sent[name] = panel
                html += panel
        return html
