"""Websocket consumers feeding the dashboard's pages (htmx ws extension, out of band).

The sockets do not read or render per push: the process's hub (dashboard.fanout) reads each job
state once, renders it once per permission set and hands every socket the same strings. A socket
only picks what its page shows (htmx logs an error for every element it cannot place): the list
gets the rows its page reports showing, plus a refresh when a job appears or changes state; a
detail page its panels, the unchanged ones skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard import relay
from dashboard.fanout import JobState, hub
from dashboard.live_status import (
    LAYER_ERRORS,
    RETRY_FIRST_SECONDS,
    next_delay,
    render_live_status,
)
from dashboard.partials import (
    DetailPush,
    render_detail_push,
    render_jobs_refresh,
    render_summary_tiles,
)
from dashboard.relay import database_sync_to_async
from reindexer.models import ReindexJob
from reindexer.permissions import can_operate, can_view
from reindexer.progress import JOBS_GROUP, job_group

# What a list socket learns on (re)connect: every active job, and the most recently changed others.
INITIAL_ACTIVE_LIMIT = 100
INITIAL_RECENT_LIMIT = 25
# The most job rows a list page may report showing (a page of the list holds far fewer).
MAX_SHOWN_IDS = 1000

RECOVERY_TASK_PREFIX = "dashboard-layer-recovery-"

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]

# The loader asking a list to re-fetch its panel is the same for every page: rendered once.
jobs_refresh = cache(render_jobs_refresh)


class _JobPushConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Authenticates, subscribes to the hub, sends the current state, then what the hub pushes.

    The channel layer (Redis) may go away and come back: the socket then stays open, the page is
    told "live updates paused", and a background task re-joins the hub's groups (a restarted Redis
    has forgotten them) and sends the current state with "live" once the layer answers again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._uses_relay = False
        self._can_operate = False
        self._subscribed = False
        self._hub_groups: list[str] = []
        self._layer_receive: Receive | None = None
        self._accepted = False
        self._paused = False
        self._recovery: asyncio.Task[None] | None = None

    @property
    def can_operate(self) -> bool:
        return self._can_operate

    # -- subclasses --------------------------------------------------------------------------

    async def resolve_groups(self) -> list[str] | None:
        """The groups to follow, or None to refuse the socket."""
        raise NotImplementedError

    async def initial_state(self) -> str:
        """The HTML sent as soon as the socket opens, and again after an outage."""
        raise NotImplementedError

    wants_tiles = False

    def compose(self, states: list[JobState]) -> str:
        """What this page shows of these new job states, as one frame ("" for nothing)."""
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
        # The hub joins the layer's groups for the whole process; this socket joins none.
        self._hub_groups = groups
        # Accepted even if the layer is away: the page still gets its state, and "paused".
        await self._join_groups()
        await self.accept()
        self._accepted = True
        if relay.needed(self.channel_layer):
            self._uses_relay = True
            await relay.relay.acquire()
        html = await self.initial_state()
        if self._paused:
            # A frame of its own: a <span> ahead of <tr> rows would make the parser drop the rows.
            await self.send(text_data=render_live_status(paused=True))
            self._start_recovery()
        if html:
            await self.send(text_data=html)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The server may cancel the consumer without a disconnect (its close timeout ran
            # out): the hub must not keep feeding it, nor the recovery outlive it.
            self._stop_recovery()
            await self._unsubscribe()

    def _stop_recovery(self) -> asyncio.Task[None] | None:
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
        return recovery

    async def _unsubscribe(self) -> None:
        if self._subscribed:
            self._subscribed = False
            await hub.unsubscribe(self)

    async def disconnect(self, code: int) -> None:
        recovery = self._stop_recovery()
        if recovery is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        await self._unsubscribe()
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
            if self._subscribed:
                await hub.rejoin()
            else:
                self._subscribed = True  # registered even when the join fails
                await hub.subscribe(self, self._hub_groups)
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
                html = await self.initial_state()
            except Exception:
                # The database blinked too: stay "paused" on the page and try again.
                logger.warning("catching up after the layer returned failed", exc_info=True)
                self._paused = True
                continue
            if self._paused:
                continue  # lost again meanwhile (and "paused" sent): keep trying
            logger.info("channel layer back; live updates resumed")
            await self.send(text_data=render_live_status(paused=False))
            if html:
                await self.send(text_data=html)
            return

    # -- what the hub hands over -------------------------------------------------------------

    async def deliver(self, html: str) -> None:
        await self.send(text_data=html)

    @database_sync_to_async
    def _permissions(self, user: Any) -> tuple[bool, bool]:
        """(may view jobs, may operate them), read once per socket."""
        return can_view(user), can_operate(user)


class JobsConsumer(_JobPushConsumer):
    """`ws/jobs/`: the jobs list.

    The page reports the job rows it shows (static/js/live.js sends `{"shown": [ids]}` on open
    and after each swap of its panel), and only those rows are pushed. A push can only replace a
    row the page already shows, so when a job appears (queued from the command line, the API or
    another tab) or changes state (which moves the tabs' counts), the page is asked to re-fetch
    its jobs panel: its own URL, so its tab, page, search and sorting hold.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statuses: dict[int, str] = {}
        self._shown: frozenset[int] = frozenset()
        self._last_rows: dict[int, str] = {}  # the row last sent per shown job
        self._caught_up = False

    async def resolve_groups(self) -> list[str] | None:
        return [JOBS_GROUP]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        shown = parse_shown(text_data)
        if shown is not None:
            # A new panel on the page (its own fetch): its rows may differ from those last sent.
            self._shown, self._last_rows = shown, {}

    wants_tiles = True

    def compose(self, states: list[JobState]) -> str:
        rows = []
        refresh = False
        for state in states:
            if state.parent_id is not None:
                continue  # a slice has no row of its own in the list: its sliced job has
            known = self._statuses.get(state.job_id)
            self._statuses[state.job_id] = state.status
            # New to this page (no row to replace), or moving between tabs: refresh the panel.
            refresh = refresh or (self._caught_up and known != state.status)
            row = state.rows.get(self._can_operate, "")
            if state.job_id in self._shown and row != self._last_rows.get(state.job_id):
                # Only a row that differs: the same state published twice is not sent again.
                self._last_rows[state.job_id] = row
                rows.append(row)
        # The loader after the rows: a <div> ahead of <tr> rows would make the parser drop them.
        return "".join(rows) + (jobs_refresh() if refresh else "")

    async def initial_state(self) -> str:
        return await self._catch_up()

    @database_sync_to_async
    def _catch_up(self) -> str:
        newest = ("-updated_at",)
        active = list(
            ReindexJob.objects.top_level()
            .active()
            .order_by(*newest)
            .only("pk", "status")[:INITIAL_ACTIVE_LIMIT]
        )
        others = ReindexJob.objects.top_level().exclude(pk__in=[job.pk for job in active])
        recent = list(others.order_by(*newest).only("pk", "status")[:INITIAL_RECENT_LIMIT])
        for job in active + recent:
            self._statuses[job.pk] = job.status
        self._caught_up = True  # from now on, a job not seen yet is new to this page
        # Not the rows: the page was rendered before this socket opened, and a job queued in
        # between has no row there to replace. The panel, fetched again, is the catch-up; the
        # tiles are outside it.
        tiles = render_summary_tiles()
        return tiles + jobs_refresh() if active or recent else tiles


def parse_shown(text_data: str | None) -> frozenset[int] | None:
    """The job ids of a `{"shown": [...]}` message from a list page; None if it is not one."""
    try:
        message = json.loads(text_data or "")
    except ValueError:
        return None
    ids = message.get("shown") if isinstance(message, dict) else None
    if not isinstance(ids, list):
        return None
    return frozenset(i for i in ids[:MAX_SHOWN_IDS] if isinstance(i, int) and i > 0)


class JobConsumer(_JobPushConsumer):
    """`ws/jobs/<id>/`: one job, for its detail page: every panel, so that it equals a reload.

    Each panel goes only when it changed (the progress block's ages change as it is re-rendered),
    so a user who paged through the failures stays there until a new failure arrives, and the same
    state published twice is not sent twice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: dict[str, str] = {}

    @property
    def job_id(self) -> int:
        return int(self.scope["url_route"]["kwargs"]["job_id"])

    async def resolve_groups(self) -> list[str] | None:
        slice_ids = await self._slice_ids()
        if slice_ids is None:
            return None
        # A sliced job's page also follows its slices: a slice's claim or end is published
        # under the slice's id alone (the relay adds its sliced job's, Redis does not).
        return [job_group(self.job_id), *(job_group(pk) for pk in slice_ids)]

    @database_sync_to_async
    def _slice_ids(self) -> list[int] | None:
        """The job's slices (none unless it was split); None if there is no such job."""
        if not ReindexJob.objects.filter(pk=self.job_id).exists():
            return None
        return list(ReindexJob.objects.filter(parent_id=self.job_id).values_list("pk", flat=True))

    async def initial_state(self) -> str:
        push = await self._render_current()
        return self._changed_panels(push) if push is not None else ""

    @database_sync_to_async
    def _render_current(self) -> DetailPush | None:
        job = ReindexJob.objects.prefetch_related("slice_jobs").filter(pk=self.job_id).first()
        return render_detail_push(job, can_operate=self._can_operate) if job else None

    def compose(self, states: list[JobState]) -> str:
        for state in states:
            push = state.details.get(self._can_operate)
            if state.job_id == self.job_id and push is not None:
                return self._changed_panels(push)
        return ""

    def _changed_panels(self, push: DetailPush) -> str:
        html = ""
        for name, panel in (
            ("progress", push.progress),  # first: the page's observers expect it ahead
            ("swap", push.swap),
            ("throttle", push.throttle),
            ("slices", push.slices),
            ("phases", push.phases),
            ("settings", push.settings),
            ("timeline", push.timeline),
            ("failures", push.failures),
            ("chart", push.chart),
        ):
            if self._sent.get(name) != panel:
                self._sent[name] = panel
                html += panel
        return html
