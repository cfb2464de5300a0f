"""Webhook alerts for jobs run for real (in process), received by a real HTTP server."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.alerts.dispatcher import Dispatcher
from reindexer.models import (
    AlertEvent,
    JobEvent,
    JobStatus,
    ReindexJob,
    Webhook,
    WebhookDelivery,
)
from reindexer.presenter import job_status
from tests.hook_server import HookServer, hook_server
from tests.integration.alerts_support import FAST, drain

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    with hook_server() as server:
        yield server


def test_completed__job_run_for_real_sends_status_fields_and_link(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
    settings: Any,
) -> None:
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER, public_url="https://reindexer.example.com"
    )
    Webhook.objects.create(url=hooks.url("/hook/T0KEN?sig=abc"), events=[])
    job = make_job(make_corpus(12), batch_size=5, name="nightly")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED

    drain(Dispatcher("alerts-test", policy=FAST))

    [request] = hooks.requests()
    assert request.path == "/hook/T0KEN?sig=abc"
    assert request.headers["content-type"] == "application/json"
    body = request.body
    assert body["event"] == AlertEvent.COMPLETED
    assert body["url"] == f"https://reindexer.example.com/jobs/{job.pk}/"
    assert "sent_at" in body
    expected = job_status(job)
    for key in ("id", "name", "status", "total_docs", "processed_docs", "failed_docs",
                "skipped_docs", "progress", "batches_done", "finished_at", "error"):  # fmt: skip
        assert body["job"][key] == expected[key], key
    assert body["job"]["processed_docs"] == 12 and body["job"]["progress"] == 1.0
    # On the timeline, with the URL cut to scheme://host: its path and query hold the token.
    detail = JobEvent.objects.get(job=job, kind="webhook").detail
    assert detail == f"completed sent to http://127.0.0.1:{hooks.port}: 200"
    assert "T0KEN" not in detail and "sig" not in detail


def test_completed_with_errors__poisoned_document(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
) -> None:
    Webhook.objects.create(url=hooks.url())
    job = make_job(make_corpus(20), batch_size=5, store="flaky(sqlite-vec,poison=doc-7)")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.failed_docs == 1

    drain(Dispatcher("alerts-test", policy=FAST))

    [request] = hooks.requests()
    assert request.body["event"] == AlertEvent.COMPLETED_WITH_ERRORS
    assert request.body["job"]["failed_docs"] == 1
    assert request.body["job"]["label"] == "completed with errors"


def test_failed__over_the_error_budget(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
) -> None:
    Webhook.objects.create(url=hooks.url(), events=[AlertEvent.FAILED])
    poison = ",".join(f"poison=doc-{i}" for i in range(10))
    job = make_job(
        make_corpus(20), batch_size=5, max_failed_ratio=0.1, store=f"flaky(sqlite-vec,{poison})"
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED

    drain(Dispatcher("alerts-test", policy=FAST))

    [request] = hooks.requests()
    assert request.body["event"] == AlertEvent.FAILED
    assert request.body["job"]["status"] == "failed"
    assert request.body["job"]["error"] == job.error != ""


def test_subscribed_to_failed_only__gets_nothing_for_a_completion(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
) -> None:
    Webhook.objects.create(url=hooks.url("/failed-only"), events=[AlertEvent.FAILED])
    Webhook.objects.create(url=hooks.url("/everything"), events=[])
    Webhook.objects.create(url=hooks.url("/inactive"), active=False)
    job = make_job(make_corpus(5))
    run_burst_worker()
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED

    drain(Dispatcher("alerts-test", policy=FAST))

    assert [r.path for r in hooks.requests()] == ["/everything"]
    assert list(WebhookDelivery.objects.values_list("url", flat=True)) == [hooks.url("/everything")]


def test_settings_urls__slack_fragment_selects_slack_and_is_not_sent(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
    settings: Any,
) -> None:
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER,
        webhook_urls=(hooks.url("/json"), hooks.url("/services/T/B/X") + "#slack"),
    )
    job = make_job(make_corpus(5), name="<b>ops & co</b>")
    run_burst_worker()
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED

    drain(Dispatcher("alerts-test", policy=FAST))

    by_path = {r.path: r.body for r in hooks.requests()}
    assert set(by_path) == {"/json", "/services/T/B/X"}
    assert by_path["/json"]["event"] == "completed"
    slack = by_path["/services/T/B/X"]
    assert set(slack) == {"text", "blocks"}
    assert f"|#{job.pk} &lt;b&gt;ops &amp; co&lt;/b&gt;>" in slack["text"]


def test_noticed_twice__sent_once(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
) -> None:
    """Two dispatchers (a restart, another worker) sweep the same end: one delivery, one POST."""
    Webhook.objects.create(url=hooks.url())
    make_job(make_corpus(5))
    run_burst_worker()
    first, second = Dispatcher("a", policy=FAST), Dispatcher("b", policy=FAST)
    assert first.notice() == 1
    assert second.notice() == 1  # it has not seen it: the unique row says it is queued already
    assert first.notice() == 0
    drain(first)
    drain(second)
    assert len(hooks.requests()) == 1
    assert WebhookDelivery.objects.get().attempts == 1


def test_slice_endings_do_not_alert__only_their_job(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    hooks: HookServer,
) -> None:
    Webhook.objects.create(url=hooks.url())
    job = make_job(make_corpus(30), batch_size=5, slices=3)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert ReindexJob.objects.filter(parent=job, status=JobStatus.COMPLETED).count() == 3

    drain(Dispatcher("alerts-test", policy=FAST))

    [request] = hooks.requests()
    assert request.body["job"]["id"] == job.pk
    assert request.body["job"]["processed_docs"] == 30
