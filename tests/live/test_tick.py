"""The hub's tick: a dead worker writes nothing, yet its row must age and turn stalled."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from django.utils import timezone

from dashboard import fanout
from dashboard.relay import database_sync_to_async
from reindexer import conf
from reindexer.models import JobStatus, ReindexJob
from tests.live.conftest import Connect, receive_all, show

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

STALLED = "badge-stalled"
LEASE_SECONDS = 1.0
STALLED_DEADLINE_SECONDS = 60


@pytest.fixture
def quick_tick(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Tick every 0.2 s, with a one-second lease."""
    monkeypatch.setattr(fanout.Hub, "tick_seconds", 0.2)
    settings.REINDEXER = dataclasses.replace(conf.get(), lease_seconds=LEASE_SECONDS)


@database_sync_to_async
def running_job() -> int:
    """A running job whose worker heartbeats now, then dies: nothing writes to the row again."""
    return ReindexJob.objects.create(
        name="orphan",
        source="jsonl:docs.jsonl",
        status=JobStatus.RUNNING,
        total_docs=10,
        lease_token=uuid.uuid4(),
        worker="dead-worker",
        heartbeat_at=timezone.now(),
    ).pk


@database_sync_to_async
def heartbeat_age_seconds(job_id: int) -> float:
    heartbeat_at = ReindexJob.objects.get(pk=job_id).heartbeat_at
    assert heartbeat_at is not None
    return (timezone.now() - heartbeat_at).total_seconds()


def tick_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(fanout.TICK_TASK_PREFIX) and not task.done()
    ]


@pytest.mark.parametrize("path", ["/ws/jobs/", "/ws/jobs/{id}/"])
async def test_tick__silent_dead_worker__job_turns_stalled_without_any_message(
    open_socket: Connect, viewer_cookie: bytes, quick_tick: None, path: str
) -> None:
    job_id = await running_job()
    communicator = await open_socket(path.format(id=job_id), cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    first = await communicator.receive_from(timeout=2)
    assert STALLED not in first
    if path == "/ws/jobs/":
        await show(communicator, job_id)

    # A generous deadline that ends as soon as the push comes: a busy machine only delays it.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STALLED_DEADLINE_SECONDS
    stalled = None
    while stalled is None:
        remaining = deadline - loop.time()
        assert remaining > 0, "no stalled push after the lease"
        frame = await communicator.receive_from(timeout=remaining)
        if STALLED in frame:
            stalled = frame
    # Order, not speed: "stalled" only once the silent heartbeat has aged past the lease.
    assert await heartbeat_age_seconds(job_id) >= LEASE_SECONDS
    assert f'data-job-id="{job_id}"' in stalled
    assert "jobs-refresh" not in stalled  # the job's state did not change


async def test_tick__finished_jobs_are_not_re_pushed(
    open_socket: Connect, viewer_cookie: bytes, quick_tick: None
) -> None:
    await database_sync_to_async(ReindexJob.objects.create)(
        name="done", source="jsonl:docs.jsonl", status=JobStatus.COMPLETED
    )
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    assert await receive_all(communicator, quiet=0.8) == []


async def test_tick__one_per_process__stops_when_the_last_socket_disconnects(
    open_socket: Connect, viewer_cookie: bytes, quick_tick: None
) -> None:
    job_id = await running_job()
    listing = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    detail = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    for communicator in (listing, detail):
        assert (await communicator.connect())[0]
        await communicator.receive_from(timeout=2)
    assert len(tick_tasks()) == 1  # the hub's, whatever the number of sockets

    await listing.disconnect()
    assert len(tick_tasks()) == 1
    await detail.disconnect()
    assert tick_tasks() == []
