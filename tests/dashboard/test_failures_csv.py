"""The failures as CSV: every failure (not one page), the list's filters, streamed, and safe to
open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from django.utils import timezone

from dashboard.failure_views import CSV_COLUMNS
from dashboard.failures import EXPORT_CHUNK, LIST_PAGE_SIZE
from reindexer.models import BatchFailure, ReindexJob

pytestmark = pytest.mark.django_db


def add_many(job: ReindexJob, n: int, **fields: Any) -> None:
    start = BatchFailure.objects.filter(job=job).count()
    BatchFailure.objects.bulk_create(
        BatchFailure(
            job=job,
            batch_number=(start + i) // 3,  # several failures share a batch, as in a real run
            doc_ids=[f"doc-{start + i}"],
            error_type=fields.get("error_type", "PermanentError"),
            message=f"failure {start + i}",
            transient=fields.get("transient", False),
            locator=f"line {start + i + 1}",
            preview=f"text {start + i}",
        )
        for i in range(n)
    )


def body_of(response: object) -> str:
    """The whole body of a streamed (synchronous) response."""
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(cast(Iterator[bytes], response.streaming_content)).decode()


def table(response: object) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body_of(response))))


@pytest.fixture
def job(make_job: Callable[..., ReindexJob]) -> ReindexJob:
    return make_job(status="completed", processed=5, failed=5)


def csv_url(job: ReindexJob) -> str:
    return f"/jobs/{job.pk}/failures.csv"


def test_csv__streams_every_failure_in_the_lists_order(viewer_client: Client, job) -> None:
    total = EXPORT_CHUNK * 2 + 7  # more than one query's chunk, far more than one page
    add_many(job, total)
    response = viewer_client.get(csv_url(job))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="job-{job.pk}-failures.csv"'
    rows = table(response)
    assert total > LIST_PAGE_SIZE
    assert [row["doc_ids"] for row in rows] == [f"doc-{i}" for i in range(total)]


def test_csv__has_the_documented_columns_and_values(viewer_client: Client, job, add_failure):
    resolved_at = timezone.now()
    failure = add_failure(
        job,
        batch_number=4,
        doc_ids=["a b.txt", "c"],
        error_type="TimeoutError",
        message="took too long",
        transient=True,
        attempts=3,
        locator="line 9",
        preview="the text",
        resolved_at=resolved_at,
    )
    response = viewer_client.get(csv_url(job))
    assert body_of(response).splitlines()[0] == ",".join(CSV_COLUMNS)
    assert table(viewer_client.get(csv_url(job))) == [
        {
            "batch": "4",
            "doc_ids": "a b.txt\nc",
            "error_type": "TimeoutError",
            "message": "took too long",
            "transient": "yes",
            "attempts": "3",
            "locator": "line 9",
            "preview": "the text",
            "created_at": failure.created_at.isoformat(),
            "resolved_at": resolved_at.isoformat(),
        }
    ]


def test_csv__applies_the_lists_filters(viewer_client: Client, job) -> None:
    add_many(job, 4, error_type="TimeoutError", transient=True)
    add_many(job, 5, error_type="PermanentError")
    add_many(job, 2, error_type="TimeoutError", transient=False)
    by_type = table(viewer_client.get(csv_url(job), {"type": "TimeoutError"}))
    assert len(by_type) == 6 and {r["error_type"] for r in by_type} == {"TimeoutError"}
    transient = table(viewer_client.get(csv_url(job), {"transient": "yes"}))
    assert len(transient) == 4 and {r["transient"] for r in transient} == {"yes"}
    both = table(viewer_client.get(csv_url(job), {"type": "TimeoutError", "transient": "no"}))
    assert len(both) == 2


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_csv__cells_a_spreadsheet_would_run_as_formulas_are_defused(
    viewer_client: Client, job, add_failure, start: str
) -> None:
    payload = f'{start}HYPERLINK("http://evil.example","x")'
    add_failure(job, doc_ids=[payload], message=payload, error_type=payload, preview=payload)
    (row,) = table(viewer_client.get(csv_url(job)))
    for column in ("doc_ids", "message", "error_type", "preview"):
        assert row[column] == f"'{payload}"


def test_csv__a_harmless_cell_is_left_as_it_is(viewer_client: Client, job, add_failure) -> None:
    add_failure(job, doc_ids=["doc-1"], message="a = b")
    (row,) = table(viewer_client.get(csv_url(job)))
    assert (row["doc_ids"], row["message"]) == ("doc-1", "a = b")


def test_csv__needs_login_and_the_view_permission(client: Client, job) -> None:
    response = client.get(csv_url(job))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get(csv_url(job)).status_code == 403


def test_csv__refuses_post(viewer_client: Client, job) -> None:
    assert viewer_client.post(csv_url(job)).status_code == 405


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_csv__under_asgi_streams_the_same_rows_asynchronously(make_job, viewer) -> None:
    job = await sync_to_async(make_job)(status="completed", processed=5, failed=5)
    await sync_to_async(add_many)(job, EXPORT_CHUNK + 3)
    client = AsyncClient()
    await client.aforce_login(viewer)
    response: object = await client.get(csv_url(job))
    assert isinstance(response, StreamingHttpResponse)
    assert response.status_code == 200
    assert response.is_async  # served by an async iterator: not read whole before it is sent
    stream = cast(AsyncIterator[bytes], response.streaming_content)
    body = b"".join([chunk async for chunk in stream]).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [row["doc_ids"] for row in rows] == [f"doc-{i}" for i in range(EXPORT_CHUNK + 3)]
