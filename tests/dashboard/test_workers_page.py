"""The workers page: recent workers with their figures, gone and stopped, access, live refresh."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from reindexer.models import ReindexJob, WorkerProcess

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
LEASE = 30.0  # tests/conftest.py's data_dir fixture sets this lease


def _worker(name: str, *, age: float = 1.0, **fields: Any) -> WorkerProcess:
    beat = timezone.now() - timedelta(seconds=age)
    values: dict[str, Any] = {
        "host": "box-1",
        "pid": 4242,
        "started_at": beat - timedelta(minutes=10),
        "heartbeat_at": beat,
    }
    values.update(fields)
    return WorkerProcess.objects.create(name=name, **values)


def _row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-worker="{re.escape(name)}".*?</tr>', html, re.S)
    assert match, f"no row for worker {name}"
    return match.group(0)


def test_workers__shows_each_recent_worker_with_host_pid_heartbeat_job_and_count(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="running", name="nightly")
    _worker("w-busy", age=3, host="box-7", pid=1234, current_job=job, jobs_done=12)
    html = viewer_client.get("/workers/").content.decode()
    row = _row(html, "w-busy")
    assert 'data-state="running"' in row
    assert "box-7" in row and "1234" in row
    assert "3s ago" in row
    assert f'href="/jobs/{job.pk}/"' in row and "nightly" in row
    assert ">12<" in row
    assert "<time datetime=" in row  # started at, through the timestamp tag


def test_workers__says_gone_when_the_heartbeat_is_older_than_the_lease(
    viewer_client: Client,
) -> None:
    _worker("w-alive", age=LEASE - 5)
    _worker("w-dead", age=LEASE + 5)
    html = viewer_client.get("/workers/").content.decode()
    assert 'data-state="idle"' in _row(html, "w-alive")
    dead = _row(html, "w-dead")
    assert 'data-state="gone"' in dead
    assert ">gone</span>" in dead


def test_workers__says_stopped_for_a_clean_exit(viewer_client: Client) -> None:
    _worker("w-done", age=LEASE + 60, stopped_at=timezone.now())
    assert 'data-state="stopped"' in _row(viewer_client.get("/workers/").content.decode(), "w-done")


def test_workers__lists_newest_heartbeat_first_and_only_the_last_day(
    viewer_client: Client,
) -> None:
    _worker("w-old", age=120)
    _worker("w-new", age=1)
    _worker("w-ancient", age=25 * 3600)
    html = viewer_client.get("/workers/").content.decode()
    assert html.index('data-worker="w-new"') < html.index('data-worker="w-old"')
    assert 'data-worker="w-ancient"' not in html


def test_workers__htmx_gets_the_table_alone_which_refetches_itself(viewer_client: Client) -> None:
    _worker("w-1")
    full = viewer_client.get("/workers/").content.decode()
    partial = viewer_client.get("/workers/", headers=HTMX).content.decode()
    assert "<html" in full and "<html" not in partial
    assert partial.lstrip().startswith('<div id="workers-panel"')
    assert 'hx-trigger="every 5s"' in partial and 'hx-get="/workers/"' in partial
    assert partial.strip() in full  # the live refresh equals a fresh load


def test_workers__escapes_names_and_hosts(viewer_client: Client) -> None:
    _worker("<b>w</b>", host="<script>alert(1)</script>")
    html = viewer_client.get("/workers/").content.decode()
    assert "<script>alert(1)</script>" not in html and "<b>w</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_workers__takes_a_bounded_number_of_queries_whatever_the_workers(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    for i in range(3):
        _worker(f"w-{i}", current_job=make_job(status="running"))
    with CaptureQueriesContext(connection) as few:
        viewer_client.get("/workers/", headers=HTMX)
    for i in range(3, 12):
        _worker(f"w-{i}", current_job=make_job(status="running"))
    with CaptureQueriesContext(connection) as many:
        viewer_client.get("/workers/", headers=HTMX)
    assert len(many) == len(few)


def test_workers__requires_login_and_the_view_permission(client: Client, db: None) -> None:
    assert client.get("/workers/").status_code == 302
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get("/workers/").status_code == 403


def test_workers__refuses_post(viewer_client: Client) -> None:
    assert viewer_client.post("/workers/").status_code == 405
