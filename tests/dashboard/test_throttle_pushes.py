"""A change of the rate limit reaches an open detail page and jobs list through their sockets:
every panel that shows the limit is pushed, as a reload renders it; the control only to those
who may operate."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client

from dashboard.relay import database_sync_to_async
from reindexer.jobs import set_throttle
from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import JOBS_GROUP, job_group, progress_message
from tests.dashboard.html import element as page_element
from tests.live.conftest import Connect, session_cookie
from tests.live.test_consumers import make_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@database_sync_to_async
def throttle(job_id: int, rate: float, user: User) -> None:
    set_throttle(ReindexJob.objects.get(pk=job_id), rate, user=user)


@database_sync_to_async
def reload_html(user: User, path: str) -> str:
    client = Client()
    client.force_login(user)
    return client.get(path).content.decode()


def element(html: str, element_id: str) -> str:
    """The element as a page shows it: a pushed frame's copy without its out-of-band mark."""
    return page_element(html, element_id).replace(' hx-swap-oob="true"', "")


def top_ids(frame: str) -> list[str]:
    return re.findall(r'^<\w+ (?:class="[^"]*" )?id="([\w-]+)"', frame, re.M)


def without_page_only_bits(html: str) -> str:
    """A page render adds the CSRF token and the return address to forms; a push cannot."""
    html = re.sub(r'<input type="hidden" name="csrfmiddlewaretoken"[^>]*>', "", html)
    return re.sub(r'<input type="hidden" name="next"[^>]*>', "", html)


async def push(job_id: int) -> None:
    await asyncio.sleep(0.25)  # past the coalescing window of the previous push
    message = progress_message(job_id)
    await get_channel_layer().group_send(job_group(job_id), message)
    await get_channel_layer().group_send(JOBS_GROUP, message)


async def test_detail_socket__a_new_limit__pushes_every_panel_that_shows_it(
    open_socket: Connect, operator: User, viewer: User
) -> None:
    job_id = await make_job("limited", JobStatus.RUNNING, processed=10)
    sockets = {}
    for user in (operator, viewer):
        socket = await open_socket(
            f"/ws/jobs/{job_id}/", cookie=await database_sync_to_async(session_cookie)(user)
        )
        assert (await socket.connect())[0]
        await socket.receive_from(timeout=2)  # the initial state
        sockets[user.username] = socket

    await throttle(job_id, 40, operator)
    await push(job_id)
    for user in (operator, viewer):
        frame = await sockets[user.username].receive_from(timeout=2)
        ids = top_ids(frame)
        for panel in ("progress", "throttle", "settings", "timeline", "chart"):
            assert f"job-{panel}-{job_id}" in ids, (panel, ids)
        assert f"job-failures-{job_id}" not in ids  # unchanged: not sent again
        reloaded = await reload_html(user, f"/jobs/{job_id}/")
        for panel in ("throttle", "settings", "timeline", "chart"):
            assert element(frame, f"job-{panel}-{job_id}") == without_page_only_bits(
                element(reloaded, f"job-{panel}-{job_id}")
            ), panel
        assert "(limit 40)" in element(frame, f"job-progress-{job_id}")
        shows_control = "Set limit" in element(frame, f"job-throttle-{job_id}")
        assert shows_control is (user is operator)

    # A batch commit moves the progress block only: the control is left as the operator types.
    await database_sync_to_async(ReindexJob.objects.filter(pk=job_id).update)(processed_docs=20)
    await push(job_id)
    frame = await sockets["operator"].receive_from(timeout=2)
    assert top_ids(frame) == [f"job-progress-{job_id}"]


async def test_list_socket__a_new_limit__updates_the_row(
    open_socket: Connect, operator: User
) -> None:
    job_id = await make_job("listed", JobStatus.RUNNING, processed=10)
    socket = await open_socket(
        "/ws/jobs/", cookie=await database_sync_to_async(session_cookie)(operator)
    )
    assert (await socket.connect())[0]
    await socket.receive_from(timeout=2)  # the tiles and a refresh
    await socket.send_to(text_data=json.dumps({"shown": [job_id]}))
    await asyncio.sleep(0.1)

    await throttle(job_id, 250, operator)
    await push(job_id)
    frame = ""
    while f'id="job-row-{job_id}"' not in frame:
        frame = await socket.receive_from(timeout=2)
    row = element(frame, f"job-row-{job_id}")
    assert "(limit 250)" in row
