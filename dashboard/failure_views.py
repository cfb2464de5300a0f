"""A job's failures at volume: the filtered, paged list, its CSV export, and a failing record's
place in its source.

The list works without JavaScript (plain links and a GET form); htmx only swaps its results.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.vary import vary_on_headers

from dashboard.failures import (
    FailureFilter,
    export_chunks,
    failure_of,
    filtered_page,
    job_failures,
    next_chunk,
    page_links,
    type_counts,
)
from dashboard.permissions import page
from reindexer.models import BatchFailure, ReindexJob
from reindexer.sources.excerpt import FailingRecord, excerpt

RESULTS_TARGET = "failure-results"
CSV_COLUMNS = (
    "batch",
    "doc_ids",
    "error_type",
    "message",
    "transient",
    "attempts",
    "locator",
    "preview",
    "created_at",
    "resolved_at",
)
# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@page()
@vary_on_headers("HX-Request", "HX-Target")
def failure_list(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(ReindexJob, pk=pk)
    flt = FailureFilter.from_query(request.GET)
    failures = filtered_page(job, flt, request.GET.get("page"))
    context: dict[str, Any] = {
        "job": job,
        "flt": flt,
        "failures": failures,
        "links": page_links(failures, flt),
        "types": type_counts(job),
    }
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target == RESULTS_TARGET:
        return render(request, "dashboard/failure_list.html#failure-results", context)
    return render(request, "dashboard/failure_list.html", context)


@page()
def failures_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    job = get_object_or_404(ReindexJob, pk=pk)
    flt = FailureFilter.from_query(request.GET)
    # Under ASGI a synchronous iterator would be read whole before the first byte is sent.
    content: Iterable[str] | AsyncIterator[str] = (
        _csv_lines_async(job, flt)
        if isinstance(request, ASGIRequest)
        else _csv_lines(export_chunks(job, flt))
    )
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-failures.csv"'
    return response


@page()
def failure_source(request: HttpRequest, pk: int, failure_pk: int) -> HttpResponse:
    failure = get_object_or_404(failure_of(pk, failure_pk).defer("traceback"))
    job = failure.job
    record = FailingRecord(
        source=job.source,
        locator=failure.locator,
        doc_ids=failure.doc_ids,
        error_type=failure.error_type,
        preview=failure.preview,
    )
    context = {"job": job, "failure": failure, "excerpt": excerpt(record)}
    return render(request, "dashboard/failure_source.html", context)


class _Line:
    """What csv.writer writes to: the line it just formatted, handed back."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _row(failure: BatchFailure) -> list[str]:
    values: list[object] = [
        failure.batch_number,
        "\n".join(failure.doc_ids),  # ids may hold spaces (file names), rarely a newline
        failure.error_type,
        failure.message,
        "yes" if failure.transient else "no",
        failure.attempts,
        failure.locator,
        failure.preview,
        failure.created_at.isoformat(),
        failure.resolved_at.isoformat() if failure.resolved_at else "",
    ]
    return [_cell(value) for value in values]


def _csv_lines(chunks: Iterable[list[BatchFailure]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    for chunk in chunks:
        yield "".join(writer.writerow(_row(failure)) for failure in chunk)


async def _csv_lines_async(job: ReindexJob, flt: FailureFilter) -> AsyncIterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    failures = flt.apply(job_failures(job)).order_by("batch_number", "id")
    after: tuple[int, int] | None = None
    # Like a request, each chunk's query closes a connection that outlived its use.
    while chunk := await database_sync_to_async(next_chunk)(failures, after):
        yield "".join(writer.writerow(_row(failure)) for failure in chunk)
        after = (chunk[-1].batch_number, chunk[-1].pk)
