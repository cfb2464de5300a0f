"""The queue page: pending jobs in claim order with positions, waiting for, running, pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.worker_views import QUEUE_PAGE_SIZE
from reindexer.models import ReindexJob
from reindexer.worker import claim_next

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
MakeJob = Callable[..., ReindexJob]


def _pending_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-job-id="(\d+)" data-status="pending"', html)]


def _row(html: str, pk: int) -> str:
    match = re.search(rf'<tr data-job-id="{pk}".*?</tr>', html, re.S)
    assert match, f"no row for job {pk}"
    return match.group(0)


def test_queue__lists_pending_jobs_in_the_order_the_worker_claims_them(
    viewer_client: Client, make_job: MakeJob
) -> None:
    later = make_job(name="later")
    earlier = make_job(name="earlier")
    ReindexJob.objects.filter(pk=earlier.pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    html = viewer_client.get("/queue/").content.decode()
    assert _pending_ids(html) == [earlier.pk, later.pk]
    assert 'data-position="1"' in _row(html, earlier.pk)
    assert 'data-position="2"' in _row(html, later.pk)
    claimed = claim_next("w1", 30.0)
    assert claimed is not None and claimed[0].pk == earlier.pk  # the page's first is the claim's


def test_queue__says_which_job_each_waits_for_and_shows_running_jobs_on_their_worker(
    viewer_client: Client, make_job: MakeJob
) -> None:
    holder = make_job(status="running", collection="shared", name="holder")
    behind = make_job(collection="shared")
    free = make_job(collection="other")
    html = viewer_client.get("/queue/").content.decode()
    assert f"waiting for #{holder.pk}" in _row(html, behind.pk)
    assert "waiting for" not in _row(html, free.pk)
    running = _row(html, holder.pk)
    assert 'data-status="running"' in running
    assert "running on" in running and "worker-test" in running
    assert "sqlite-vec" in running and "shared" in running


def test_queue__a_second_pending_job_on_a_collection_waits_for_the_first(
    viewer_client: Client, make_job: MakeJob
) -> None:
    first = make_job(collection="shared")
    second = make_job(collection="shared")
    html = viewer_client.get("/queue/").content.decode()
    assert "waiting for" not in _row(html, first.pk)
    assert f"waiting for #{first.pk}" in _row(html, second.pk)


def test_queue__pages_keep_counting_positions_and_take_the_same_queries(
    viewer_client: Client, make_job: MakeJob
) -> None:
    jobs = [make_job(collection=f"c{i}") for i in range(QUEUE_PAGE_SIZE + 3)]
    with CaptureQueriesContext(connection) as first_page:
        html = viewer_client.get("/queue/", headers=HTMX).content.decode()
    assert len(_pending_ids(html)) == QUEUE_PAGE_SIZE
    with CaptureQueriesContext(connection) as second_page:
        html = viewer_client.get("/queue/?page=2", headers=HTMX).content.decode()
    assert _pending_ids(html) == [job.pk for job in jobs[QUEUE_PAGE_SIZE:]]
    assert f'data-position="{QUEUE_PAGE_SIZE + 1}"' in _row(html, jobs[QUEUE_PAGE_SIZE].pk)
    assert 'hx-get="/queue/?page=2"' in html  # the live refresh stays on its page
    assert len(second_page) == len(first_page)


def test_queue__htmx_gets_the_tables_alone_equal_to_a_fresh_load(
    viewer_client: Client, make_job: MakeJob
) -> None:
    make_job(status="running", collection="shared")
    make_job(collection="shared")
    full = viewer_client.get("/queue/").content.decode()
    partial = viewer_client.get("/queue/", headers=HTMX).content.decode()
    assert "<html" not in partial
    assert partial.lstrip().startswith('<div id="queue-panel"')
    assert 'hx-trigger="every 5s"' in partial
    assert partial.strip() in full


def test_queue__escapes_job_names(viewer_client: Client, make_job: MakeJob) -> None:
    make_job(name="<img src=x onerror=alert(1)>")
    html = viewer_client.get("/queue/").content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_queue__requires_login_and_the_view_permission(client: Client, db: None) -> None:
    assert client.get("/queue/").status_code == 302
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get("/queue/").status_code == 403
