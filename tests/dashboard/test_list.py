"""The jobs list: rows, labels, badges, markup hooks, tabs, search, pagination, queries."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _row(html: str, pk: int) -> str:
    match = re.search(rf'<tr id="job-row-{pk}".*?</tr>', html, re.S)
    assert match, f"no row for job {pk}"
    return match.group(0)


def test_list__shows_each_job_with_its_figures(viewer_client: Client, make_job) -> None:
    job = make_job(status="running", name="nightly", total=200, processed=50, failed=2)
    response = viewer_client.get("/")
    assert response.status_code == 200
    row = _row(response.content.decode(), job.pk)
    assert f'data-job-id="{job.pk}"' in row
    assert 'data-status="running"' in row
    assert 'role="progressbar"' in row
    assert 'aria-valuenow="25"' in row
    assert "nightly" in row
    assert "50 / 200" in row
    assert "ago" in row  # the heartbeat's age
    assert f'href="/jobs/{job.pk}/"' in row


def test_list__labels_cancelling_and_completed_with_errors(viewer_client: Client, make_job) -> None:
    cancelling = make_job(status="running", cancelling=True)
    with_errors = make_job(status="completed", processed=5, failed=1)
    clean = make_job(status="completed", processed=5)
    html = viewer_client.get("/").content.decode()
    assert ">cancelling<" in _row(html, cancelling.pk)
    assert 'data-status="running"' in _row(html, cancelling.pk)
    assert ">completed with errors<" in _row(html, with_errors.pk)
    assert 'aria-valuenow="100"' in _row(html, with_errors.pk)
    assert ">completed<" in _row(html, clean.pk)
    assert "with errors" not in _row(html, clean.pk)


def test_list__marks_a_job_stalled_when_its_heartbeat_is_older_than_the_lease(
    viewer_client: Client, make_job
) -> None:
    stalled = make_job(status="running", heartbeat_age=120)  # the lease is 30 s in tests
    fresh = make_job(status="running", heartbeat_age=2)
    html = viewer_client.get("/").content.decode()
    assert ">stalled<" in _row(html, stalled.pk)
    assert "stalled" not in _row(html, fresh.pk)


def test_list__cancel_button_only_while_pending_or_running(
    operator_client: Client, make_job
) -> None:
    pending, running = make_job(), make_job(status="running")
    cancelling, done = make_job(status="running", cancelling=True), make_job(status="completed")
    html = operator_client.get("/").content.decode()
    for job in (pending, running):
        row = _row(html, job.pk)
        assert ">Cancel</button>" in row
        assert f'hx-post="/jobs/{job.pk}/cancel/"' in row
        assert "hx-confirm=" in row
        assert f'action="/jobs/{job.pk}/cancel/"' in row  # works without JavaScript too
    for job in (cancelling, done):
        assert ">Cancel</button>" not in _row(html, job.pk)
    assert 'data-can-operate="true"' in html


def test_list__page_has_the_live_hooks(viewer_client: Client) -> None:
    html = viewer_client.get("/").content.decode()
    assert 'hx-ext="ws"' in html
    assert 'ws-connect="/ws/jobs/"' in html
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert "/static/django_htmx/ext/hx-ws-2.min.js" in html
    assert "/static/css/reindexer.css" in html
    assert "x-csrftoken" in html
    assert "unpkg" not in html and "cdn" not in html.lower()


def test_static__stylesheet_and_htmx_are_served(viewer_client: Client) -> None:
    for path in ["/static/css/reindexer.css", "/static/django_htmx/ext/hx-ws-2.min.js"]:
        response = viewer_client.get(path)
        assert response.status_code == 200, path
        b"".join(response.streaming_content)  # type: ignore[attr-defined]
        response.close()


def test_tabs__count_jobs_per_status_and_filter(viewer_client: Client, make_job) -> None:
    make_job(), make_job(), make_job(status="running"), make_job(status="completed")
    html = viewer_client.get("/").content.decode()
    assert re.search(r'All <span class="count">4</span>', html)
    assert re.search(r'Pending <span class="count">2</span>', html)
    assert re.search(r'Running <span class="count">1</span>', html)
    assert re.search(r'Failed <span class="count">0</span>', html)
    filtered = viewer_client.get("/?status=pending").content.decode()
    assert filtered.count('class="job-row"') == 2
    assert 'aria-current="page">Pending' in filtered


def test_tabs__unknown_status_shows_all(viewer_client: Client, make_job) -> None:
    make_job(), make_job(status="running")
    assert viewer_client.get("/?status=bogus").content.decode().count('class="job-row"') == 2


def test_search__by_name(viewer_client: Client, make_job) -> None:
    make_job(name="alpha corpus"), make_job(name="beta corpus")
    html = viewer_client.get("/?q=ALPHA").content.decode()
    assert "alpha corpus" in html
    assert "beta corpus" not in html
    assert re.search(r'All <span class="count">1</span>', html)


def test_pagination__links_work_with_and_without_htmx(viewer_client: Client, make_job) -> None:
    for i in range(27):
        make_job(name=f"job {i:02d}")
    first = viewer_client.get("/?status=pending").content.decode()
    assert first.count('class="job-row"') == 25
    assert 'href="?status=pending&amp;page=2"' in first
    assert 'hx-get="?status=pending&amp;page=2"' in first
    second = viewer_client.get("/?status=pending&page=2").content.decode()
    assert second.count('class="job-row"') == 2
    assert "Page 2 of 2" in second
    partial = viewer_client.get(
        "/?page=2", headers={**HTMX, "HX-Target": "jobs-panel"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="jobs-panel"')
    assert "<html" not in partial
    assert partial.count('class="job-row"') == 2


def test_list__query_count_does_not_grow_with_the_rows(viewer_client: Client, make_job) -> None:
    make_job(), make_job(status="running")
    viewer_client.get("/")  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        viewer_client.get("/")
    for _ in range(10):
        make_job(status="running", failed=1)
    with CaptureQueriesContext(connection) as many:
        viewer_client.get("/")
    assert len(many) == len(few)
