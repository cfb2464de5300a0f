"""A detail page's socket pushes every panel the page shows, as a reload renders it, and only those:
the failures (first page and count), the settings with their dates, the timeline."""

from __future__ import annotations

import asyncio
import re

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboard.relay import database_sync_to_async
from reindexer.models import BatchFailure, JobStatus, ReindexJob
from reindexer.progress import job_group, progress_message
from tests.live.conftest import Connect
from tests.live.test_consumers import make_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def fail_batches(job_id: int, count: int) -> None:
    """What a batch commit with failures writes: the rows, the counter and a new version."""
    job = ReindexJob.objects.get(pk=job_id)
    BatchFailure.objects.bulk_create(
        BatchFailure(job=job, batch_number=n, doc_ids=[f"doc-{n}"], error_type="ValueError")
        for n in range(count)
    )
    ReindexJob.objects.filter(pk=job_id).update(
        failed_docs=count, started_at=timezone.now(), updated_at=timezone.now()
    )


@database_sync_to_async
def reload_html(user: User, job_id: int) -> str:
    client = Client()
    client.force_login(user)
    return client.get(f"/jobs/{job_id}/").content.decode()


def panel(html: str, element_id: str) -> str:
    found = re.search(rf'<section class="card" id="{element_id}"[^>]*>.*?</section>', html, re.S)
    assert found, f"no #{element_id} in {html[:300]!r}"
    return found.group(0).replace(' hx-swap-oob="true"', "")


async def push(job_id: int) -> None:
    await asyncio.sleep(0.25)  # past the coalescing window of the previous push
    await get_channel_layer().group_send(job_group(job_id), progress_message(job_id))


async def test_job_socket__new_failures_and_dates__arrive_as_a_reload_shows_them(
    open_socket: Connect, viewer: User, viewer_cookie: bytes
) -> None:
    job_id = await make_job("flaky", JobStatus.RUNNING, processed=30)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    initial = await communicator.receive_from(timeout=2)
    assert "No failures." in panel(initial, f"job-failures-{job_id}")

    await fail_batches(job_id, 25)  # more than a page
    await push(job_id)
    frame = await communicator.receive_from(timeout=2)
    reloaded = await reload_html(viewer, job_id)
    for element_id in (f"job-failures-{job_id}", f"job-settings-{job_id}"):
        assert panel(frame, element_id) == panel(reloaded, element_id)
    assert "Page 1 of 2" in panel(frame, f"job-failures-{job_id}")


async def test_job_socket__unchanged_panels__are_not_sent_again(
    open_socket: Connect, viewer_cookie: bytes
) -> None:
    job_id = await make_job("steady", JobStatus.RUNNING, processed=10)
    communicator = await open_socket(f"/ws/jobs/{job_id}/", cookie=viewer_cookie)
    assert (await communicator.connect())[0]
    initial = await communicator.receive_from(timeout=2)
    for element_id in ("job-settings", "job-timeline", "job-failures", "job-progress"):
        assert f'id="{element_id}-{job_id}"' in initial

    # A batch commit changes the progress block only.
    await database_sync_to_async(ReindexJob.objects.filter(pk=job_id).update)(processed_docs=20)
    await push(job_id)
    frame = await communicator.receive_from(timeout=2)
    ids = re.findall(r'^<\w+ (?:class="[^"]*" )?id="([\w-]+)"', frame, re.M)
    assert ids == [f"job-progress-{job_id}"]  # a user paging the failures stays on their page
