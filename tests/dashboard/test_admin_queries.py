"""The admin at volume: a page's query count does not grow with the rows behind it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from reindexer.admin import INLINE_LIMIT
from reindexer.models import BatchFailure, EventKind, JobEvent, ReindexJob

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/reindexer/reindexjob/"
# Session, user, the job with its relations, both inlines and their counts, the content type:
# 8 for a superuser; the bound leaves room for Django's own queries, not for one per row.
CHANGE_PAGE_MAX_QUERIES = 10
CHANGELIST_MAX_QUERIES = 8


def add_failures(job: ReindexJob, count: int) -> None:
    BatchFailure.objects.bulk_create(
        BatchFailure(
            job=job,
            batch_number=n,
            doc_ids=[f"doc-{n}-a", f"doc-{n}-b"],
            error_type="PermanentError",
            message=f"poisoned batch {n}",
            traceback="Traceback (most recent call last):\nPermanentError: poisoned",
        )
        for n in range(1, count + 1)
    )


def add_events(job: ReindexJob, count: int) -> None:
    JobEvent.objects.bulk_create(
        JobEvent(job=job, kind=EventKind.CHECKPOINT_RESUMED, actor="worker-test", detail=f"#{n}")
        for n in range(count)
    )


def queries_of(client: Client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured), response.content.decode()


@pytest.mark.parametrize("failures", [1, 200])
def test_job_change_page__runs_the_same_bounded_queries_for_1_or_200_failures(
    admin_client: Client,
    make_job: Callable[..., ReindexJob],
    django_assert_max_num_queries: Any,
    failures: int,
) -> None:
    job = make_job(status="completed", processed=5, failed=failures)
    add_failures(job, failures)
    add_events(job, failures)
    with django_assert_max_num_queries(CHANGE_PAGE_MAX_QUERIES):
        response = admin_client.get(f"{CHANGELIST}{job.pk}/change/")
    assert response.status_code == 200


def test_job_change_page__query_count_is_the_same_at_1_and_200_failures(
    admin_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    few, many = make_job(status="completed"), make_job(status="completed")
    add_failures(few, 1)
    add_failures(many, 200)
    add_events(many, 200)
    assert (
        queries_of(admin_client, f"{CHANGELIST}{few.pk}/change/")[0]
        == (queries_of(admin_client, f"{CHANGELIST}{many.pk}/change/")[0])
    )


def test_job_change_page__shows_the_latest_failures_and_links_to_all_of_them(
    admin_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="completed")
    add_failures(job, 45)
    html = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    shown = [n for n in range(1, 46) if f"poisoned batch {n}<" in html]
    assert shown == list(range(46 - INLINE_LIMIT, 46))
    assert f"{INLINE_LIMIT} of 45 shown." in html
    link = f'href="/admin/reindexer/batchfailure/?job__exact={job.pk}"'
    assert link in html
    listing = admin_client.get(f"/admin/reindexer/batchfailure/?job__exact={job.pk}")
    assert listing.status_code == 200
    assert "45 batch failures" in listing.content.decode()


def test_job_change_page__links_to_every_event_of_the_job(
    admin_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job, other = make_job(status="completed"), make_job(status="completed")
    add_events(job, 30)
    events = job.events.count()
    html = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    assert f"{INLINE_LIMIT} of {events} shown." in html
    listing = admin_client.get(f"/admin/reindexer/jobevent/?job__exact={job.pk}").content.decode()
    assert f"{events} job events" in listing
    assert f"#{other.pk} " not in listing


def test_job_changelist__runs_the_same_queries_for_2_or_60_jobs(
    admin_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    for _ in range(2):
        make_job(status="completed", failed=1)
    few = queries_of(admin_client, CHANGELIST)[0]
    for _ in range(58):
        make_job(status="running")
    many, html = queries_of(admin_client, CHANGELIST)
    assert few == many <= CHANGELIST_MAX_QUERIES
    assert "60 reindex jobs" in html


@pytest.mark.parametrize(
    "url",
    [
        f"{CHANGELIST}?status__exact=running",
        f"{CHANGELIST}?store=sqlite-vec",
        f"{CHANGELIST}?embedder=hashing&created_at__gte=2000-01-01+00:00:00%2B00:00",
        "/admin/reindexer/batchfailure/",
        "/admin/reindexer/jobevent/",
        "/admin/reindexer/workerprocess/",
    ],
)
def test_admin_lists__query_count_does_not_grow_with_rows(
    admin_client: Client, make_job: Callable[..., ReindexJob], url: str
) -> None:
    first = make_job(status="running")
    add_failures(first, 2)
    few = queries_of(admin_client, url)[0]
    for _ in range(30):
        add_failures(make_job(status="running"), 2)
    assert queries_of(admin_client, url)[0] == few <= CHANGELIST_MAX_QUERIES


def test_job_changelist__filters_by_store_backend_spec_options_included(
    admin_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    plain = make_job(name="plain one")
    flaky = make_job(name="flaky one", store="flaky(sqlite-vec,transient=0.1)")
    html = admin_client.get(CHANGELIST, {"store": "flaky"}).content.decode()
    assert f"{CHANGELIST}{flaky.pk}/change/" in html
    assert f"{CHANGELIST}{plain.pk}/change/" not in html
    html = admin_client.get(CHANGELIST, {"store": "sqlite-vec"}).content.decode()
    assert f"{CHANGELIST}{plain.pk}/change/" in html
    assert f"{CHANGELIST}{flaky.pk}/change/" not in html
