"""A job's trace: the request that created it, the worker's job span, a span per batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from reindexer import telemetry
from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.tracing.conftest import Spans

pytestmark = pytest.mark.django_db(transaction=True)


def operator_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def start_job(client: Client, **body: Any) -> ReindexJob:
    response = client.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    return ReindexJob.objects.get(pk=response.json()["id"])


def traceparent(job: ReindexJob) -> tuple[str, str]:
    """The trace id and parent span id stored on a job; its flags must say "sampled"."""
    version, trace_id, span_id, flags = job.trace_context["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 0x01
    return trace_id, span_id


def ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)


def attrs(span_or_event: Any) -> dict[str, Any]:
    """A span's or an event's attributes, as a plain dict."""
    return dict(span_or_event.attributes or {})


def parent_id(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def batch_spans(spans: Spans) -> list[ReadableSpan]:
    return sorted(
        spans.named("reindex.batch"), key=lambda span: attrs(span)["reindex.batch_number"]
    )


def exception_events(span: ReadableSpan) -> list[Any]:
    return [event for event in span.events if event.name == "exception"]


def test_tracing__sdk_provider_is_installed_and_kept(spans: Spans) -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    telemetry.configure_tracing()  # returns early: an SDK provider is there already
    assert trace.get_tracer_provider() is provider


def test_job_span_continues_the_trace_of_the_request_that_created_it(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = start_job(operator_client(operator), source=corpus, batch_size=4)

    (server,) = spans.server()
    server_trace, server_span = ids(server)
    http = attrs(server)
    # Old or new HTTP semantic conventions, whichever the instrumentation emits.
    assert http.get("http.method", http.get("http.request.method")) == "POST"
    assert http.get("http.status_code", http.get("http.response.status_code")) == 201
    assert traceparent(job) == (server_trace, server_span)

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    job_span = spans.one("reindex.job")
    job_trace, job_span_id = ids(job_span)
    assert job_trace == server_trace
    assert parent_id(job_span) == server_span
    assert attrs(job_span)["reindex.job_id"] == job.pk
    assert attrs(job_span)["reindex.outcome"] == "completed"
    assert attrs(job_span)["reindex.worker"] == "tracing-tests"
    assert attrs(job_span)["reindex.source"] == corpus
    assert job_span.status.status_code != StatusCode.ERROR

    batches = batch_spans(spans)
    assert [attrs(span)["reindex.batch_number"] for span in batches] == [1, 2, 3]
    assert [attrs(span)["reindex.batch_size"] for span in batches] == [4, 4, 2]
    for span in batches:
        assert ids(span)[0] == job_trace
        assert parent_id(span) == job_span_id
        attributes = attrs(span)
        assert attributes["reindex.job_id"] == job.pk
        assert attributes["reindex.attempts"] == 1
        assert attributes["reindex.outcome"] == "ok"
        assert attributes["reindex.failed"] == 0
        assert exception_events(span) == []
    assert sum(attrs(span)["reindex.written"] for span in batches) == 10


def test_failing_batch_span_records_the_poisoned_document(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = start_job(
        operator_client(operator),
        source=corpus,
        store="flaky(sqlite-vec,poison=doc-3)",
        batch_size=2,
        max_failed_ratio=1.0,
    )

    run_worker()

    job.refresh_from_db()
    assert (job.status, job.failed_docs) == (JobStatus.COMPLETED, 1)
    batches = batch_spans(spans)
    assert len(batches) == 5
    failing = batches[1]  # doc-2 and doc-3
    assert attrs(failing)["reindex.outcome"] == "partial"
    assert (attrs(failing)["reindex.written"], attrs(failing)["reindex.failed"]) == (1, 1)
    (event,) = exception_events(failing)
    assert attrs(event)["exception.type"] == "PermanentError"
    assert "poisoned document 'doc-3'" in attrs(event)["exception.message"]
    assert "PermanentError" in attrs(event)["exception.stacktrace"]
    assert list(attrs(event)["reindex.doc_ids"]) == ["doc-3"]
    for span in batches[:1] + batches[2:]:
        assert attrs(span)["reindex.outcome"] == "ok"
        assert exception_events(span) == []
    assert attrs(spans.one("reindex.job"))["reindex.outcome"] == "completed"


def test_retried_attempts_show_on_the_batch_spans(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = start_job(
        operator_client(operator),
        source=corpus,
        store="flaky(sqlite-vec,transient=0.4,seed=7)",
        batch_size=2,
        max_retries=20,
    )

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.retries > 0
    batches = batch_spans(spans)
    attempts = [attrs(span)["reindex.attempts"] for span in batches]
    assert sum(a - 1 for a in attempts) == job.retries
    assert max(attempts) > 1


def test_job_over_its_error_budget_ends_with_an_error_status(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = start_job(
        operator_client(operator),
        source=corpus,
        store="flaky(sqlite-vec,poison=doc-0)",
        batch_size=5,
        max_failed_ratio=0.0,
    )

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    job_span = spans.one("reindex.job")
    assert attrs(job_span)["reindex.outcome"] == "failed"
    assert job_span.status.status_code == StatusCode.ERROR
    assert "error budget exceeded" in (job_span.status.description or "")
    (event,) = exception_events(batch_spans(spans)[0])
    assert "doc-0" in attrs(event)["exception.message"]


def test_store_down_fails_the_batch_span_with_the_exception(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = start_job(
        operator_client(operator),
        source=corpus,
        store="flaky(sqlite-vec,transient=1)",
        batch_size=10,
        max_retries=0,
    )

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "store unreachable" in job.error
    (batch,) = batch_spans(spans)
    assert batch.status.status_code == StatusCode.ERROR
    (event,) = exception_events(batch)
    assert attrs(event)["exception.type"].endswith("StoreUnreachable")
    job_span = spans.one("reindex.job")
    assert job_span.status.status_code == StatusCode.ERROR
    assert attrs(job_span)["reindex.outcome"] == "failed"


def test_retry_failed_job_continues_the_trace_of_its_own_request(
    spans: Spans, operator: User, corpus: str, run_worker: Callable[[], None]
) -> None:
    client = operator_client(operator)
    job = start_job(
        client, source=corpus, store="flaky(sqlite-vec,poison=doc-3)", max_failed_ratio=1.0
    )
    run_worker()
    spans.exporter.clear()

    response = client.post(f"/api/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 201
    retry = ReindexJob.objects.get(pk=response.json()["id"])
    (server,) = spans.server()
    server_trace, server_span = ids(server)
    assert traceparent(retry) == (server_trace, server_span)

    run_worker()

    job_span = spans.one("reindex.job")
    assert ids(job_span)[0] == server_trace and parent_id(job_span) == server_span
    assert attrs(job_span)["reindex.job_id"] == retry.pk


def test_job_created_outside_a_request_gets_a_root_job_span(
    spans: Spans, corpus: str, run_worker: Callable[[], None]
) -> None:
    job = create_job(JobSpec(source=corpus))
    assert job.trace_context == {}

    run_worker()

    job_span = spans.one("reindex.job")
    assert job_span.parent is None
    for batch in batch_spans(spans):
        assert parent_id(batch) == ids(job_span)[1]
