"""A Redis restart under open sockets: they stay open, say "paused", then resume and catch up.

Each test runs its own redis-server on its own port (no persistence, so a restart also forgets
the groups), and the channel layer of the real ASGI application points at it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from dashboard.relay import database_sync_to_async
from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import JOBS_GROUP, job_group, progress_message
from tests.browser.servers import RedisServer
from tests.live.conftest import Connect, show

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

# Generous: the consumer retries with a backoff of at most a few seconds.
DEADLINE = 20.0
PAUSED = 'data-live="paused"'
LIVE = 'data-live="live"'


@pytest_asyncio.fixture
async def own_layer(settings: Any, redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    """The channel layer on the test's own Redis; request it before open_socket."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_server.url], "prefix": f"restart-{uuid.uuid4().hex}"},
        }
    }
    yield redis_server
    await get_channel_layer().close_pools()


@database_sync_to_async
def make_running_job(processed: int = 10) -> int:
    job = ReindexJob.objects.create(
        name="restart",
        source="jsonl:docs.jsonl",
        status=JobStatus.RUNNING,
        total_docs=100,
        processed_docs=processed,
        lease_token=uuid.uuid4(),
        worker="w1",
        heartbeat_at=timezone.now(),
    )
    return job.pk


@database_sync_to_async
def set_processed(job_id: int, processed: int) -> None:
    """What the worker's batch commit does to the row (without publishing anything)."""
    ReindexJob.objects.filter(pk=job_id).update(
        processed_docs=processed, heartbeat_at=timezone.now(), updated_at=timezone.now()
    )


def progress_of(frame: str, job_id: int) -> int | None:
    """aria-valuenow of the job's progress block in a pushed frame, if the frame has one."""
    block = re.search(rf'<section id="job-progress-{job_id}".*?</section>', frame, re.S)
    value = block and re.search(r'aria-valuenow="(\d+)"', block.group(0))
    return int(value.group(1)) if value else None


async def frame_with(communicator: WebsocketCommunicator, needle: str) -> str:
    """The first frame containing `needle` (others, such as ticks, are skipped)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            frame: str = await communicator.receive_from(timeout=DEADLINE)
            if needle in frame:
                return frame


async def status_then_state(communicator: WebsocketCommunicator, needle: str) -> str:
    """The state sent right after the status frame containing `needle`: the status goes alone, as
    a <span> ahead of a list's <tr> rows would make the browser's parser drop the rows."""
    status = await frame_with(communicator, needle)
    assert "job-" not in status, status
    state: str = await communicator.receive_from(timeout=DEADLINE)
    return state


async def detail_socket(open_socket: Connect, cookie: bytes, job_id: int) -> WebsocketCommunicator:
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=cookie)
    connected, _ = await communicator.connect(timeout=DEADLINE)
    assert connected
    return communicator


async def test_a_socket_opened_while_redis_is_down__is_accepted_and_says_paused(
    own_layer: RedisServer, open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_running_job(processed=10)
    own_layer.stop()
    communicator = await detail_socket(open_socket, viewer_cookie, job_id)
    first = await status_then_state(communicator, PAUSED)
    assert progress_of(first, job_id) == 10  # the database still serves the initial state
    assert await communicator.receive_nothing(timeout=1.0)  # still open, nothing raised

    await set_processed(job_id, 30)
    await asyncio.to_thread(own_layer.start)
    resumed = await status_then_state(communicator, LIVE)
    assert progress_of(resumed, job_id) == 30

    # The groups were joined on recovery: a worker's progress message reaches the socket.
    await set_processed(job_id, 40)
    await get_channel_layer().group_send(job_group(job_id), progress_message(job_id))
    async with asyncio.timeout(DEADLINE):
        while progress_of(await communicator.receive_from(timeout=DEADLINE), job_id) != 40:
            pass


async def test_a_redis_restart_under_an_open_socket__pauses_then_resumes_with_the_current_state(
    own_layer: RedisServer, open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_running_job(processed=10)
    communicator = await detail_socket(open_socket, viewer_cookie, job_id)
    first = await communicator.receive_from(timeout=DEADLINE)
    assert progress_of(first, job_id) == 10
    assert PAUSED not in first

    own_layer.stop()
    await frame_with(communicator, PAUSED)  # not a close (1011): receive_from would fail
    await set_processed(job_id, 60)  # published to nobody: Redis is away
    await asyncio.to_thread(own_layer.start)  # same port, and it has forgotten every group

    resumed = await status_then_state(communicator, LIVE)
    assert progress_of(resumed, job_id) == 60
    await set_processed(job_id, 70)
    await get_channel_layer().group_send(job_group(job_id), progress_message(job_id))
    async with asyncio.timeout(DEADLINE):
        while progress_of(await communicator.receive_from(timeout=DEADLINE), job_id) != 70:
            pass


async def test_the_jobs_list_socket__also_pauses_and_resumes_across_a_redis_restart(
    own_layer: RedisServer, open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_running_job(processed=10)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    connected, _ = await communicator.connect(timeout=DEADLINE)
    assert connected
    assert 'id="jobs-refresh"' in await communicator.receive_from(timeout=DEADLINE)
    await show(communicator, job_id)

    own_layer.stop()
    await frame_with(communicator, PAUSED)
    await set_processed(job_id, 50)
    await asyncio.to_thread(own_layer.start)
    # The catch-up of a list is a fresh panel (the refresh loader), then pushes follow again.
    resumed = await status_then_state(communicator, LIVE)
    assert 'id="jobs-refresh"' in resumed
    await set_processed(job_id, 60)
    await get_channel_layer().group_send(JOBS_GROUP, progress_message(job_id))
    pushed = await frame_with(communicator, f'id="job-row-{job_id}"')
    row = re.search(rf'<tr id="job-row-{job_id}".*?</tr>', pushed, re.S)
    assert row and 'aria-valuenow="60"' in row.group(0)


async def test_a_socket_opened_right_after_redis_returns__is_accepted_and_gets_pushes(
    own_layer: RedisServer, open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_running_job(processed=10)
    first = await detail_socket(open_socket, viewer_cookie, job_id)
    await first.receive_from(timeout=DEADLINE)  # the pool now holds connections to this Redis
    own_layer.stop()
    await frame_with(first, PAUSED)
    await asyncio.to_thread(own_layer.start)

    # Connections pooled before the restart are stale now: this connect must not trip on them.
    second = await detail_socket(open_socket, viewer_cookie, job_id)
    await set_processed(job_id, 80)
    await get_channel_layer().group_send(job_group(job_id), progress_message(job_id))
    async with asyncio.timeout(DEADLINE):
        while progress_of(await second.receive_from(timeout=DEADLINE), job_id) != 80:
            pass
    await frame_with(first, LIVE)
