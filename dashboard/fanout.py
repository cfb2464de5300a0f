"""One subscription per process to the live groups, and each job state read and rendered once.

The sockets of this process do not join the channel layer's groups themselves: the hub does, with
one channel of its own, so Redis holds one member per process whatever the number of browsers.
For each job it reads the row and renders the partials once per push window (one variant per
permission set), then hands the same strings to every socket that shows the job. A push always
renders the state current when it runs, so a socket gets the newest state next and stale ones
are dropped, never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.layers import get_channel_layer

from dashboard.live_status import LAYER_ERRORS, RETRY_FIRST_SECONDS, next_delay
from dashboard.partials import (
    DetailPush,
    render_detail_push,
    render_list_push,
    render_summary_tiles,
)
from dashboard.relay import database_sync_to_async, orphan_sweep
from reindexer.models import ReindexJob
from reindexer.progress import JOBS_GROUP, PROGRESS_MESSAGE, job_group

# At most one render per job per process in this many seconds (10 a second); the last state always
# follows, as one trailing push at the end of the window.
MIN_PUSH_INTERVAL = 0.1
# Every this many seconds the hub re-renders the running jobs shown here (a dead worker writes
# nothing, yet its heartbeat must age on screen) and re-joins its groups, so that their expiry
# (CHANNEL_LAYERS group_expiry) only ever drops a process that died.
TICK_SECONDS = 5.0
TICK_TASK_PREFIX = "dashboard-tick-"
# The running jobs a list re-renders on a tick, newest first.
TICK_RUNNING_LIMIT = 100
# The summary tiles (totals across every job) go to the lists at most this often.
TILES_INTERVAL = 1.0
# Past this many jobs, the remembered publication stamps are forgotten.
STAMP_MEMORY = 10_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobState:
    """One job's state as every socket of this process shows it: rendered once per variant."""

    job_id: int
    status: str
    parent_id: int | None = None  # a slice's sliced job
    rows: dict[bool, str] = field(default_factory=dict)  # list row, by "may operate"
    details: dict[bool, DetailPush] = field(default_factory=dict)  # detail panels, likewise


class Subscriber(Protocol):
    """A socket fed by the hub."""

    @property
    def can_operate(self) -> bool: ...

    @property
    def wants_tiles(self) -> bool: ...

    def compose(self, states: list[JobState]) -> str:
        """What this socket's page shows of these new states, as one frame ("" for nothing)."""
        ...

    async def deliver(self, html: str) -> None: ...


class Hub:
    """The per-process fan-out: groups joined once, renders shared, pushes coalesced per job."""

    min_push_interval = MIN_PUSH_INTERVAL
    tiles_interval = TILES_INTERVAL
    tick_seconds = TICK_SECONDS

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: str | None = None
        self._members: dict[str, set[Subscriber]] = {}
        self._joined: set[str] = set()
        self._receiver: asyncio.Task[None] | None = None
        self._tick: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._dirty: set[int] = set()
        self._tiles_dirty = False
        self._last_flush = -1e9
        self._last_tiles = -1e9
        self._stamps: dict[int, str] = {}

    @property
    def channel_layer(self) -> Any:
        return get_channel_layer()

    @property
    def group_names(self) -> frozenset[str]:
        return frozenset(self._members)

    # -- subscribers -------------------------------------------------------------------------

    async def subscribe(self, subscriber: Subscriber, groups: Iterable[str]) -> None:
        """Feed `subscriber` the pushes of `groups`; raises a layer error if the layer is away
        (the subscriber stays registered, and `rejoin` joins its groups once it is back)."""
        groups = list(groups)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Left behind on another (closed) loop, as when each test runs its own.
            self._reset()
            self._loop = loop
        if self._channel is None:
            # The layer's default prefix: channels-redis serves every channel of one prefix with a
            # single receive loop, and a channel of another prefix would wait for its turn.
            self._channel = await self.channel_layer.new_channel()
        for group in groups:
            self._members.setdefault(group, set()).add(subscriber)
        if self._receiver is None:
            self._receiver = loop.create_task(self._receive_loop(), name="dashboard-hub-receive")
            self._tick = loop.create_task(self._tick_loop(), name=f"{TICK_TASK_PREFIX}hub")
        # Joined again even if joined: a Redis restarted since has forgotten the group.
        await self._join(set(groups))

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding `subscriber`; groups nobody here shows any more are left at once."""
        if self._loop is not asyncio.get_running_loop():
            return
        emptied = [g for g, members in self._members.items() if members <= {subscriber}]
        for group, members in list(self._members.items()):
            members.discard(subscriber)
            if not members:
                del self._members[group]
        for group in emptied:
            self._joined.discard(group)
            if self._channel is not None:
                try:
                    await self.channel_layer.group_discard(group, self._channel)
                except LAYER_ERRORS:
                    logger.debug("could not leave %s: channel layer unreachable", group)
        if not self._members:
            await self._stop()

    async def rejoin(self) -> None:
        """Join every group again (a restarted Redis forgot them); raises while it is away."""
        self._joined.clear()
        await self._join(set(self._members))

    async def _join(self, groups: set[str]) -> None:
        assert self._channel is not None  # noqa: S101 - set by subscribe() before any join
        for group in sorted(groups):
            await self.channel_layer.group_add(group, self._channel)
            self._joined.add(group)

    async def _stop(self) -> None:
        tasks = [self._receiver, self._tick, self._flusher]
        self._receiver = self._tick = self._flusher = None
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reset()

    # -- messages ----------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._channel is not None  # noqa: S101 - created before the loop starts
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                message = await self.channel_layer.receive(self._channel)
            except LAYER_ERRORS:
                # The sockets tell their pages and re-join (via rejoin) themselves.
                await asyncio.sleep(delay)
                delay = next_delay(delay)
                continue
            delay = RETRY_FIRST_SECONDS
            if message.get("type") == PROGRESS_MESSAGE:
                self._on_progress(message)

    def _on_progress(self, message: dict[str, Any]) -> None:
        job_id = int(message["job_id"])
        # One publication reaches the hub through both groups (list and job): push it once.
        stamp = message.get("stamp")
        if stamp is not None:
            if self._stamps.get(job_id) == stamp:
                return
            if len(self._stamps) > STAMP_MEMORY:
                self._stamps.clear()
            self._stamps[job_id] = stamp
        self.notify(job_id)

    def notify(self, job_id: int, *, tick: bool = False) -> None:
        """A job changed: push it with the next flush (at once, or at the end of the window)."""
        self._dirty.add(job_id)
        if not tick and JOBS_GROUP in self._members:
            self._tiles_dirty = True
        self._kick()

    def _kick(self) -> None:
        if self._loop is not None and (self._flusher is None or self._flusher.done()):
            self._flusher = self._loop.create_task(self._flush_loop(), name="dashboard-hub-flush")

    def _tiles_wait(self, now: float) -> float:
        return self._last_tiles + self.tiles_interval - now

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty or (self._tiles_dirty and self._tiles_wait(loop.time()) <= 0):
            wait = self._last_flush + self.min_push_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_flush = loop.time()
            jobs, self._dirty = self._dirty, set()
            try:
                await self._flush(jobs, loop.time())
            except Exception:
                # The next change of those jobs pushes their state again.
                logger.warning("pushing jobs %s failed", sorted(jobs), exc_info=True)
        if self._tiles_dirty:
            # The tiles' own window is still open: their last state follows when it closes.
            loop.call_later(max(0.0, self._tiles_wait(loop.time())), self._kick)

    async def _flush(self, jobs: set[int], now: float) -> None:
        """One read and one render per job state, then one frame per socket."""
        listing = set(self._members.get(JOBS_GROUP, ()))
        details = {job: set(self._members.get(job_group(job), ())) for job in jobs}
        # Every detail page shown here, by job: a slice's change is also its sliced job's.
        watched = {
            int(group.removeprefix("job-")): {s.can_operate for s in subs}
            for group, subs in self._members.items()
            if group != JOBS_GROUP
        }
        states = await self._read_and_render(
            jobs,
            row_variants={s.can_operate for s in listing},
            # Only the pages of the job itself: a sliced job's page follows its slices' groups,
            # and shows their change through its own panels (`watched`).
            detail_variants={
                job: {s.can_operate for s in subs if getattr(s, "job_id", job) == job}
                for job, subs in details.items()
            },
            watched=watched,
        )
        for state in states:
            if state.job_id not in details:  # a sliced job pushed for its slice
                details[state.job_id] = set(self._members.get(job_group(state.job_id), ()))
        subscribers = listing.union(*details.values())
        tiles = None
        if self._tiles_dirty and now >= self._last_tiles + self.tiles_interval:
            self._tiles_dirty, self._last_tiles = False, now
            if listing:
                tiles = await database_sync_to_async(render_summary_tiles)()
        for subscriber in subscribers:
            html = subscriber.compose(states) if states else ""
            if html:
                await self._deliver(subscriber, html)
            if tiles and subscriber.wants_tiles:
                # A frame of its own: the parser drops <tr> rows that follow a <section>.
                await self._deliver(subscriber, tiles)

    async def _deliver(self, subscriber: Subscriber, html: str) -> None:
        try:
            await subscriber.deliver(html)
        except Exception:
            logger.debug("a socket could not take a push", exc_info=True)

    @database_sync_to_async
    def _read_and_render(
        self,
        jobs: set[int],
        *,
        row_variants: set[bool],
        detail_variants: dict[int, set[bool]],
        watched: dict[int, set[bool]],
    ) -> list[JobState]:
        read = list(ReindexJob.objects.filter(pk__in=jobs).prefetch_related("slice_jobs"))
        # A slice's change shows on its sliced job's page (the slices table), whatever carried
        # it: a publication of the slice's id alone, a relay that saw only the slice's row.
        parents = {
            job.parent_id
            for job in read
            if job.parent_id is not None and job.parent_id not in jobs and job.parent_id in watched
        }
        if parents:
            read += ReindexJob.objects.filter(pk__in=parents).prefetch_related("slice_jobs")
            detail_variants = {**detail_variants, **{p: watched[p] for p in parents}}
        return [
            JobState(
                job_id=job.pk,
                status=job.status,
                parent_id=job.parent_id,
                rows=(
                    {v: render_list_push(job, can_operate=v) for v in row_variants}
                    if job.parent_id is None
                    else {}
                ),
                details={
                    v: render_detail_push(job, can_operate=v)
                    for v in detail_variants.get(job.pk, set())
                },
            )
            for job in sorted(read, key=lambda job: job.pk)
        ]

    # -- the periodic tick -------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                with contextlib.suppress(*LAYER_ERRORS):
                    await self._join(set(self._members))  # renews the groups' expiry
                for job_id in await self._running_shown_ids():
                    self.notify(job_id, tick=True)
                # A cancel whose worker died ends here too when Redis carries the pushes (and
                # no relay polls).
                for job_id in await orphan_sweep.run_if_due():
                    self.notify(job_id)
            except Exception:
                # A failed tick (database briefly away) must not end the ticks.
                logger.warning("periodic refresh failed", exc_info=True)

    async def _running_shown_ids(self) -> list[int]:
        detail_ids = [
            int(group.removeprefix("job-")) for group in self._members if group != JOBS_GROUP
        ]
        return await _running_ids(detail_ids, include_list=JOBS_GROUP in self._members)


@database_sync_to_async
def _running_ids(detail_ids: list[int], *, include_list: bool) -> list[int]:
    running = ReindexJob.objects.running().order_by("-updated_at")
    if not include_list:
        running = running.filter(pk__in=detail_ids)
    return list(running.values_list("pk", flat=True)[:TICK_RUNNING_LIMIT])


hub = Hub()
