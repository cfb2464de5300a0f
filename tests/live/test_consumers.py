"""The dashboard's websockets, driven through the real ASGI application (origin check, session auth,
URL routing), with the in-memory layer plus the database relay, and with Redis."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from dashboard import relay
from dashboard.relay import database_sync_to_async
from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import JOBS_GROUP, job_group, progress_message
from tests.live.conftest import TILES_FRAME, Connect, receive_all, receive_rows, show

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def make_job(name: str = "job", status: str = JobStatus.PENDING, processed: int = 0) -> int:
    running = status == JobStatus.RUNNING
    job = ReindexJob.objects.create(
        name=name,
        source="jsonl:docs.jsonl",
        collection=f"c-{name}",  # one writer per collection: running jobs need their own
        status=status,
        total_docs=100,
        processed_docs=processed,
        lease_token=uuid.uuid4() if running else None,
        worker="w1" if running else "",
        heartbeat_at=timezone.now() if running else None,
    )
    return job.pk


@database_sync_to_async
def set_processed(job_id: int, processed: int) -> None:
    """What the worker's batch commit does to the row (without publishing anything)."""
    ReindexJob.objects.filter(pk=job_id).update(processed_docs=processed, updated_at=timezone.now())


def progress_of(frame: str, job_id: int) -> int:
    """aria-valuenow of the job's row (list) or progress block (detail) in a pushed frame."""
    row = re.search(rf'<tr id="job-row-{job_id}"[^>]*>.*?</tr>', frame, re.S) or re.search(
        rf'<section id="job-progress-{job_id}"[^>]*>.*?</section>', frame, re.S
    )
    assert row, f"no row or progress block of job {job_id} in {frame!r}"
    value = re.search(r'aria-valuenow="(\d+)"', row.group(0))
    assert value
    return int(value.group(1))


async def group_send(group: str, job_id: int) -> None:
    await get_channel_layer().group_send(group, progress_message(job_id))


async def frames_until(
    communicator: WebsocketCommunicator,
    condition: Callable[[str], bool],
    deadline_seconds: float = 60,
) -> list[str]:
    """Frames up to the first that meets `condition`, within a deadline a busy machine can meet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    frames: list[str] = []
    while not frames or not condition(frames[-1]):
        remaining = deadline - loop.time()
        assert remaining > 0, f"no such frame after {len(frames)} frames"
        frames.append(await communicator.receive_from(timeout=remaining))
    return frames


# -- who may connect --------------------------------------------------------------------------


async def test_anonymous_socket__is_closed(open_socket: Connect) -> None:
    communicator = await open_socket("/ws/jobs/")
    connected, _ = await communicator.connect()
    assert not connected


async def test_user_without_view_permission__is_closed(
    open_socket: Connect, stranger_cookie: bytes
) -> None:
    communicator = await open_socket("/ws/jobs/", cookie=stranger_cookie)
    connected, _ = await communicator.connect()
    assert not connected


async def test_foreign_origin__is_rejected(open_socket: Connect, viewer_cookie: bytes) -> None:
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie, origin=b"http://evil.test")
    connected, _ = await communicator.connect()
    assert not connected


async def test_missing_origin__is_rejected(open_socket: Connect, viewer_cookie: bytes) -> None:
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie, origin=None)
    connected, _ = await communicator.connect()
    assert not connected


async def test_unknown_job__socket_is_closed(open_socket: Connect, viewer_cookie: bytes) -> None:
    communicator = await open_socket("/ws/jobs/999999/", cookie=viewer_cookie)
    connected, _ = await communicator.connect()
    assert not connected


# -- the current state on (re)connect ---------------------------------------------------------


async def test_list_socket__catches_up_on_connect_by_refreshing_the_panel(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    # The page was rendered before its socket opened: a job queued in between has no row there,
    # so the first frame asks the page to fetch its panel again rather than send rows blindly.
    await make_job("queued")
    running = await make_job("busy", JobStatus.RUNNING, processed=40)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    connected, _ = await communicator.connect()
    assert connected
    frame = await communicator.receive_from(timeout=2)
    assert 'id="jobs-refresh"' in frame and 'hx-trigger="load"' in frame
    assert "job-row-" not in frame
    assert 'id="summary-tiles"' in frame  # outside the panel: sent with the catch-up
    assert await communicator.receive_nothing(timeout=0.3)
    # The jobs it counted as seen, once the page shows them, get their rows, not a refresh.
    await show(communicator, running)
    await set_processed(running, 55)
    await group_send(JOBS_GROUP, running)
    pushed = await receive_rows(communicator)
    assert progress_of(pushed, running) == 55
    assert 'id="jobs-refresh"' not in pushed


async def test_list_socket__with_no_jobs_sends_only_the_summary_tiles_on_connect(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    connected, _ = await communicator.connect()
    assert connected
    frame = await communicator.receive_from(timeout=2)
    assert frame.startswith(TILES_FRAME) and "jobs-refresh" not in frame
    assert await communicator.receive_nothing(timeout=0.3)


async def test_job_socket__sends_that_job_only(open_socket: Connect, viewer_cookie: bytes) -> None:
    mine = await make_job("mine", JobStatus.RUNNING, processed=10)
    other = await make_job("other", JobStatus.RUNNING, processed=20)
    communicator = await open_socket(f"/ws/jobs/{mine}/", cookie=viewer_cookie)
    connected, _ = await communicator.connect()
    assert connected
    frame = await communicator.receive_from(timeout=2)
    assert f'id="job-progress-{mine}"' in frame
    assert f"job-row-{other}" not in frame

    await group_send(job_group(other), other)
    await group_send(JOBS_GROUP, other)
    assert await communicator.receive_nothing(timeout=0.4)


# -- pushes -----------------------------------------------------------------------------------


async def test_group_message__pushes_the_rendered_row_out_of_band(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("busy", JobStatus.RUNNING, processed=5)
    listing = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    detail = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await listing.connect())[0]
    assert (await detail.connect())[0]
    await listing.receive_from(timeout=2)
    await detail.receive_from(timeout=2)
    await show(listing, job_id)

    await set_processed(job_id, 30)
    await group_send(JOBS_GROUP, job_id)
    await group_send(job_group(job_id), job_id)

    row = await receive_rows(listing)
    assert re.search(rf'<tr id="job-row-{job_id}"[^>]*hx-swap-oob="true"', row)
    assert "job-progress-" not in row
    block = await detail.receive_from(timeout=2)
    assert re.search(rf'<section id="job-progress-{job_id}"[^>]*hx-swap-oob="true"', block)
    assert "job-row-" not in block
    for frame in (row, block):
        assert progress_of(frame, job_id) == 30


async def test_burst_of_messages__is_coalesced_and_ends_with_the_final_state(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("busy", JobStatus.RUNNING)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    await asyncio.sleep(0.25)

    for i in range(1, 21):
        if i == 20:
            await set_processed(job_id, 77)
        await group_send(job_group(job_id), job_id)

    frames = await frames_until(communicator, lambda frame: progress_of(frame, job_id) == 77)
    frames += await receive_all(communicator, quiet=0.5)
    assert 1 <= len(frames) < 20, f"{len(frames)} pushes for 20 messages: none coalesced"
    # Nothing older follows the final state: the last push shows it.
    assert progress_of(frames[-1], job_id) == 77


async def test_steady_messages__are_coalesced_per_job_and_end_with_the_final_state(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    first = await make_job("a", JobStatus.RUNNING)
    second = await make_job("b", JobStatus.RUNNING)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    await show(communicator, first, second)
    await asyncio.sleep(0.25)

    writes = 50
    for i in range(1, writes + 1):  # 50 messages a job, about a second's worth
        await set_processed(first, i)
        for job_id in (first, second):
            await group_send(JOBS_GROUP, job_id)
        await asyncio.sleep(0.02)

    def shows_final_state(frame: str) -> bool:
        return f"job-row-{first}" in frame and progress_of(frame, first) == writes

    received = await frames_until(communicator, shows_final_state)
    received += await receive_all(communicator, quiet=0.5)
    for job_id in (first, second):
        pushes = [frame for frame in received if f"job-row-{job_id}" in frame]
        assert 1 <= len(pushes) < writes, f"job {job_id}: {len(pushes)} pushes for {writes}"
    last_of_first = [frame for frame in received if f"job-row-{first}" in frame][-1]
    assert progress_of(last_of_first, first) == writes


# -- the database relay (no Redis) ------------------------------------------------------------


async def test_relay__pushes_a_change_written_outside_the_consumer(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("busy", JobStatus.RUNNING, processed=1)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    assert relay.relay.running
    await show(communicator, job_id)

    await set_processed(job_id, 64)  # no group_send: only the relay can notice

    frame = await receive_rows(communicator)
    assert progress_of(frame, job_id) == 64
    await communicator.disconnect()
    assert not relay.relay.running


async def test_relay__pushes_a_change_committed_by_another_process(
    open_socket: Connect, viewer_cookie: bytes, worker_env: dict[str, str]
) -> None:
    job_id = await make_job("busy", JobStatus.RUNNING, processed=1)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)

    script = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from reindexer.models import ReindexJob\n"
        f"ReindexJob.objects.filter(pk={job_id}).update(processed_docs=88, "
        "updated_at=timezone.now())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=worker_env, cwd=str(Path(__file__).parents[2])
    )
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0

    frame = await communicator.receive_from(timeout=3)
    assert re.search(r'aria-valuenow="88"', frame)


# -- Redis ------------------------------------------------------------------------------------


async def test_redis__group_send_from_another_layer_instance_reaches_the_socket(
    redis_layer: dict[str, Any], open_socket: Connect, viewer_cookie: bytes
) -> None:
    from channels_redis.core import RedisChannelLayer

    job_id = await make_job("busy", JobStatus.RUNNING, processed=3)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    assert not relay.relay.running, "the relay must not run when Redis carries progress"

    await set_processed(job_id, 51)
    worker_side = RedisChannelLayer(**redis_layer)  # as the worker process would have
    try:
        await worker_side.group_send(job_group(job_id), progress_message(job_id))
        frame = await communicator.receive_from(timeout=3)
    finally:
        await worker_side.close_pools()
    assert progress_of_section(frame, job_id) == 51
    await communicator.disconnect()


def progress_of_section(frame: str, job_id: int) -> int:
    block = re.search(rf'<section id="job-progress-{job_id}"[^>]*>.*?</section>', frame, re.S)
    assert block, f"no progress block of job {job_id} in {frame!r}"
    value = re.search(r'aria-valuenow="(\d+)"', block.group(0))
    assert value
    return int(value.group(1))
