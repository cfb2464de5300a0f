"""A job's failures page: counts by error type, filters, pages, and the detail panel's summary."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.failures import LIST_PAGE_SIZE
from dashboard.partials import render_failures_panel
from reindexer.documents import MALFORMED_ERROR
from reindexer.models import BatchFailure, ReindexJob

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]

HTMX = {"HX-Request": "true"}
AddFailures = Callable[..., list[BatchFailure]]


@pytest.fixture
def add_failures() -> AddFailures:
    """`n` single-document failures of one kind, in one query (volume, not variety)."""

    def add(
        job: ReindexJob, n: int, *, error_type: str = "PermanentError", **fields: Any
    ) -> list[BatchFailure]:
        start = BatchFailure.objects.filter(job=job).count()
        rows = [
            BatchFailure(
                job=job,
                batch_number=start + i,
                doc_ids=[f"{error_type}-{start + i}"],
                error_type=error_type,
                message=f"{error_type} number {start + i}",
                locator=f"line {start + i + 1}",
                preview=f"text of document {start + i}",
                **fields,
            )
            for i in range(n)
        ]
        return BatchFailure.objects.bulk_create(rows)

    return add


@pytest.fixture
def job(make_job: MakeJob) -> ReindexJob:
    return make_job(status="completed", processed=5, failed=5)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="failure-row[^"]*" id="failure-row-(\d+)"', html)


def list_url(job: ReindexJob) -> str:
    return f"/jobs/{job.pk}/failures/"


def test_failure_list__groups_the_failures_by_error_type_with_counts(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, 3, error_type="TimeoutError", transient=True)
    add_failures(job, 7, error_type="PermanentError")
    add_failures(job, 1, error_type=MALFORMED_ERROR)
    html = viewer_client.get(list_url(job)).content.decode()
    groups = re.findall(
        r'<li data-error-type="([^"]+)"><a href="([^"]+)"[^>]*><code>[^<]+</code> '
        r'<span class="count">(\d+)</span>',
        html,
    )
    assert groups == [
        ("PermanentError", f"{list_url(job)}?type=PermanentError", "7"),
        ("TimeoutError", f"{list_url(job)}?type=TimeoutError", "3"),
        (MALFORMED_ERROR, f"{list_url(job)}?type={MALFORMED_ERROR}", "1"),
    ]
    assert len(rows(html)) == 11


def test_failure_list__filters_by_error_type(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    timeouts = add_failures(job, 3, error_type="TimeoutError", transient=True)
    add_failures(job, 4, error_type="PermanentError")
    html = viewer_client.get(list_url(job), {"type": "TimeoutError"}).content.decode()
    assert rows(html) == [str(f.pk) for f in timeouts]
    assert '<option value="TimeoutError" selected>' in html
    assert "(filtered)" in html


def test_failure_list__filters_transient_and_permanent(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    transient = add_failures(job, 2, error_type="TimeoutError", transient=True)
    permanent = add_failures(job, 3, error_type="PermanentError")
    yes = viewer_client.get(list_url(job), {"transient": "yes"}).content.decode()
    no = viewer_client.get(list_url(job), {"transient": "no"}).content.decode()
    both = viewer_client.get(list_url(job), {"transient": "maybe"}).content.decode()
    assert rows(yes) == [str(f.pk) for f in transient]
    assert rows(no) == [str(f.pk) for f in permanent]
    assert len(rows(both)) == 5


def test_failure_list__a_type_and_transient_filter_combine(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, 2, error_type="TimeoutError", transient=True)
    add_failures(job, 2, error_type="TimeoutError", transient=False)
    html = viewer_client.get(list_url(job), {"type": "TimeoutError", "transient": "no"})
    assert len(rows(html.content.decode())) == 2


def test_failure_list__pages_keep_the_filter_and_work_without_javascript(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, LIST_PAGE_SIZE + 5, error_type="TimeoutError", transient=True)
    add_failures(job, 3, error_type="PermanentError")
    first = viewer_client.get(list_url(job), {"type": "TimeoutError"}).content.decode()
    assert len(rows(first)) == LIST_PAGE_SIZE
    next_link = "?type=TimeoutError&amp;page=2"
    assert f'href="{next_link}"' in first and f'hx-get="{next_link}"' in first
    assert 'hx-target="#failure-results"' in first and 'hx-push-url="true"' in first
    second = viewer_client.get(list_url(job), {"type": "TimeoutError", "page": "2"})
    assert len(rows(second.content.decode())) == 5


def test_failure_list__htmx_gets_only_the_results(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, 3)
    response = viewer_client.get(
        list_url(job), {"page": "1"}, headers={**HTMX, "HX-Target": "failure-results"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="failure-results">')
    assert "<html" not in html
    assert len(rows(html)) == 3
    assert "HX-Request" in response["Vary"]


def test_failure_list__each_row_shows_ids_kind_attempts_resolution_and_preview(
    viewer_client: Client, job: ReindexJob, add_failure
) -> None:
    open_failure = add_failure(
        job,
        doc_ids=["doc-9"],
        locator="line 10",
        preview="the text of doc 9",
        message="m" * 500,
        attempts=4,
    )
    resolved = add_failure(job, doc_ids=["doc-8"], resolved_at=timezone.now(), transient=True)
    malformed = add_failure(job, doc_ids=["line 3"], error_type=MALFORMED_ERROR, locator="line 3")
    html = viewer_client.get(list_url(job)).content.decode()

    def row(failure: BatchFailure) -> str:
        found = re.search(rf'<tr [^>]*id="failure-row-{failure.pk}".*?</tr>', html, re.S)
        assert found
        return found.group(0)

    first = row(open_failure)
    source = f"/jobs/{job.pk}/failures/{open_failure.pk}/source/"
    assert f'<a class="source-link" href="{source}" title="line 10"><code>doc-9</code></a>' in first
    assert "permanent" in first and '<td class="num">4</td>' in first
    assert "the text of doc 9" in first
    assert "m" * 139 + "…" in first and "m" * 141 not in first
    assert ">no</td>" in first
    assert "resolved</span>" in row(resolved) and "transient" in row(resolved)
    assert "source-link" not in row(resolved)  # no locator recorded: nothing to link to
    assert "fix in the source" in row(malformed)


def test_failure_list__query_count_does_not_grow_with_the_rows_shown(
    viewer_client: Client, make_job, add_failures: AddFailures
) -> None:
    def queries(n: int) -> int:
        job = make_job(status="completed", processed=5, failed=5)
        add_failures(job, n, error_type="PermanentError")
        add_failures(job, 2, error_type="TimeoutError", transient=True)
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(list_url(job)).status_code == 200
        return len(captured)

    assert queries(2) == queries(LIST_PAGE_SIZE * 3)


def test_failure_list__needs_login_and_the_view_permission(client: Client, job: ReindexJob) -> None:
    response = client.get(list_url(job))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get(list_url(job)).status_code == 403


def test_failure_list__refuses_post_and_unknown_jobs(viewer_client: Client, job) -> None:
    assert viewer_client.post(list_url(job)).status_code == 405
    assert viewer_client.get("/jobs/999999/failures/").status_code == 404


# -- the detail page's failures card ---------------------------------------------------------


def panel(html: str, job: ReindexJob) -> str:
    found = re.search(rf'<section class="card" id="job-failures-{job.pk}".*?</section>', html, re.S)
    assert found
    return found.group(0)


def test_detail__counts_failures_by_type_linking_to_the_filtered_list(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, 2, error_type="TimeoutError", transient=True)
    add_failures(job, 5, error_type="PermanentError")
    card = panel(viewer_client.get(f"/jobs/{job.pk}/").content.decode(), job)
    assert re.findall(
        r'<a href="([^"]+)"><code>([^<]+)</code> <span class="count">(\d+)', card
    ) == [
        (f"{list_url(job)}?type=PermanentError", "PermanentError", "5"),
        (f"{list_url(job)}?type=TimeoutError", "TimeoutError", "2"),
    ]
    assert f'<a class="btn btn-sm" href="{list_url(job)}">All failures</a>' in card
    assert f'href="/jobs/{job.pk}/failures.csv"' in card


def test_detail__a_job_without_failures_shows_no_type_counts(
    viewer_client: Client, job: ReindexJob
) -> None:
    card = panel(viewer_client.get(f"/jobs/{job.pk}/").content.decode(), job)
    assert "No failures." in card
    assert "failure-types" not in card


def test_detail__the_pushed_failures_card_equals_a_reload(
    viewer_client: Client, job: ReindexJob, add_failures: AddFailures
) -> None:
    add_failures(job, 25, error_type="TimeoutError", transient=True)
    add_failures(job, 3, error_type="PermanentError")
    pushed = render_failures_panel(job, oob=True).replace(' hx-swap-oob="true"', "")
    assert panel(viewer_client.get(f"/jobs/{job.pk}/").content.decode(), job) == pushed


def test_detail__query_count_does_not_grow_with_the_failures(
    viewer_client: Client, make_job, add_failures: AddFailures
) -> None:
    def queries(n: int) -> int:
        job = make_job(status="completed", processed=5, failed=5)
        add_failures(job, n, error_type="PermanentError")
        add_failures(job, 1, error_type="TimeoutError", transient=True)
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(f"/jobs/{job.pk}/").status_code == 200
        return len(captured)

    assert queries(1) == queries(300)
