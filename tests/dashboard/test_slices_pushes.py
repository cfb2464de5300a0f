"""A sliced job's detail page follows its slices live: the socket of the sliced job pushes its
slices table when only a slice's row changed (the relay sees the slice's row, or the engine
publishes the slice's id), and a cancel that no worker is left to confirm ends on the page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone

from dashboard import relay
from dashboard.relay import database_sync_to_async
from reindexer.models import ReindexJob
from reindexer.progress import send_job_message
from tests.dashboard.slices import MakeJob, run_slice, sliced_job
from tests.live.conftest import Connect, receive_all

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def slice_status(frames: list[str], slice_id: int) -> str | None:
    """The last status of slice `slice_id` in the pushed slices tables."""
    found = None
    for frame in frames:
        for match in re.finditer(rf'<tr class="slice-row" id="slice-row-{slice_id}"[^>]*>', frame):
            status = re.search(r'data-status="([^"]*)"', match.group(0))
            worker = re.search(r'data-worker="([^"]*)"', match.group(0))
            assert status and worker
            found = f"{status.group(1)}:{worker.group(1)}"
    return found


async def test_detail_socket__pushes_a_slice_claimed_without_its_job_changing(
    open_socket: Connect, viewer_cookie: bytes, make_job: MakeJob
) -> None:
    job, slices = await database_sync_to_async(sliced_job)(make_job)
    communicator = await open_socket(f"/ws/jobs/{job.pk}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    first = await receive_all(communicator)
    assert slice_status(first, slices[2].pk) == "pending:"
    assert relay.relay.running  # no Redis: the relay reads the rows

    # Only the slice's row changes (a claim touches not its sliced job).
    await database_sync_to_async(run_slice)(slices[2], "worker-c")
    frames = await receive_all(communicator, quiet=1.0)
    assert slice_status(frames, slices[2].pk) == "running:worker-c"
    assert all(f'id="job-slices-{job.pk}"' in f for f in frames if "slice-row" in f)


async def test_detail_socket__pushes_a_slice_published_by_its_own_id(
    redis_layer: dict[str, Any], open_socket: Connect, viewer_cookie: bytes, make_job: MakeJob
) -> None:
    job, slices = await database_sync_to_async(sliced_job)(make_job)
    communicator = await open_socket(f"/ws/jobs/{job.pk}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    await receive_all(communicator)
    assert not relay.relay.running

    await database_sync_to_async(run_slice)(slices[0], "worker-a")
    await send_job_message(get_channel_layer(), slices[0].pk)  # what the engine publishes
    frames = await receive_all(communicator, quiet=1.0)
    assert slice_status(frames, slices[0].pk) == "running:worker-a"


async def test_detail_socket__shows_an_orphaned_cancel_ended_without_a_reload(
    open_socket: Connect, viewer_cookie: bytes, make_job: MakeJob, monkeypatch: Any
) -> None:
    def orphan() -> tuple[ReindexJob, list[ReindexJob]]:
        job, slices = sliced_job(make_job, slices=2)
        for n, slice_job in enumerate(slices):
            run_slice(slice_job, f"dead-{n}", heartbeat_age=600)
        job.request_cancel("operator")
        ReindexJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - timedelta(hours=1)
        )
        return job, slices

    monkeypatch.setattr(relay, "orphan_sweep", relay.OrphanSweep(interval=0.2))
    job, slices = await database_sync_to_async(orphan)()
    communicator = await open_socket(f"/ws/jobs/{job.pk}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    frames = await receive_all(communicator, quiet=1.5)
    progress = [f for f in frames if f'id="job-progress-{job.pk}"' in f]
    assert progress and 'data-status="cancelled"' in progress[-1]
    assert slice_status(frames, slices[0].pk) == "cancelled:dead-0"
