"""Pushes that keep the rest of a page current: the list refreshes its panel when a job appears
or changes state, and a detail page's timeline follows the job's events."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from dashboard.relay import database_sync_to_async
from reindexer.jobs import create_job
from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.progress import JOBS_GROUP, job_group, progress_message
from reindexer.specs import JobSpec
from tests.live.conftest import Connect, receive_rows, show
from tests.live.test_consumers import make_job, set_processed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

REFRESH = 'id="jobs-refresh"'


@database_sync_to_async
def log_event(job_id: int, kind: EventKind, actor: str, detail: str = "") -> None:
    ReindexJob.objects.get(pk=job_id).log(kind, actor, detail)


@database_sync_to_async
def set_status(job_id: int, status: str) -> None:
    ReindexJob.objects.filter(pk=job_id).update(status=status)


async def test_list_socket__job_queued_elsewhere__asks_the_page_to_refresh_its_panel(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    await make_job("already shown")
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    initial = await communicator.receive_from(timeout=2)
    assert REFRESH in initial  # the catch-up on connect: the page fetches its panel again

    newcomer = await make_job("queued from the command line")
    await get_channel_layer().group_send(JOBS_GROUP, progress_message(newcomer))
    frame = await receive_rows(communicator)
    # Only the refresh: the page has no row to replace yet, and the refreshed panel brings it.
    assert f'id="job-row-{newcomer}"' not in frame
    assert REFRESH in frame and 'hx-get=""' in frame and 'hx-target="#jobs-panel"' in frame


async def test_list_socket__progress_alone__does_not_refresh_but_a_state_change_does(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("busy", JobStatus.RUNNING, processed=10)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await communicator.receive_from(timeout=2)
    await show(communicator, job_id)

    await set_processed(job_id, 50)
    await get_channel_layer().group_send(JOBS_GROUP, progress_message(job_id))
    assert REFRESH not in await receive_rows(communicator)

    await set_status(job_id, JobStatus.COMPLETED)
    await get_channel_layer().group_send(JOBS_GROUP, progress_message(job_id))
    frame = await receive_rows(communicator)
    assert 'data-status="completed"' in frame
    assert REFRESH in frame


async def test_job_socket__push_carries_the_timeline_with_new_events_escaped(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("watched", JobStatus.RUNNING, processed=10)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    initial = await communicator.receive_from(timeout=2)
    assert f'id="job-timeline-{job_id}"' in initial

    await log_event(job_id, EventKind.CANCEL_REQUESTED, "<script>alert(1)</script>")
    await get_channel_layer().group_send(job_group(job_id), progress_message(job_id))
    frame = await communicator.receive_from(timeout=2)
    assert f'id="job-timeline-{job_id}" hx-swap-oob="true"' in frame
    assert "event-cancel_requested" in frame
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in frame
    assert "<script>alert(1)" not in frame
    assert REFRESH not in frame


async def test_redis__job_queued_through_create_job__is_announced_to_open_lists(
    redis_layer: dict[str, Any], open_socket: Connect, viewer_cookie: bytes, make_corpus: Any
) -> None:
    make_corpus(5)
    communicator = await open_socket("/ws/jobs/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    # No jobs yet: only the summary tiles, no refresh.
    assert "jobs-refresh" not in await communicator.receive_from(timeout=3)

    # Nothing else publishes: no worker runs, and the relay is off because Redis carries progress.
    job = await database_sync_to_async(create_job)(JobSpec(source="jsonl:docs.jsonl", name="new"))
    frame = await receive_rows(communicator)
    assert f'id="job-row-{job.pk}"' not in frame  # the refreshed panel brings the row
    assert REFRESH in frame
