"""End to end: a real worker subprocess runs a job and its dispatcher alerts a real HTTP server;
a webhook that keeps failing beside it changes nothing for the job."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reindexer.models import (
    DeliveryState,
    EventKind,
    JobEvent,
    JobStatus,
    ReindexJob,
    WebhookDelivery,
)
from reindexer.verify import verify_job
from tests.hook_server import hook_server
from tests.integration.conftest import Processes, finish, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


def test_worker_subprocess__alerts_its_jobs_end(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(40), batch_size=10, name="e2e & <alerts>")
    with hook_server() as good, hook_server(*[500] * 10) as bad:
        urls = f"{good.url('/ok')} {bad.url('/broken')} {good.url('/slack')}#slack"
        worker = processes.worker("w-alerts", burst=False, env={"REINDEXER_WEBHOOK_URLS": urls})
        wait_until(
            lambda: {r.path for r in good.requests()} == {"/ok", "/slack"} and bool(bad.requests()),
            what="the worker's dispatcher to send the completion",
        )
        worker.terminate()
        code, _, err = finish(worker)
        assert code == 0, err

        by_path = {r.path: r.body for r in good.requests()}
        assert by_path["/ok"]["event"] == "completed"
        assert by_path["/ok"]["job"]["id"] == job.pk
        assert by_path["/ok"]["job"]["processed_docs"] == 40
        assert by_path["/ok"]["url"].endswith(f"/jobs/{job.pk}/")
        assert "&lt;alerts&gt;" in by_path["/slack"]["text"]
        assert all(r.path == "/broken" for r in bad.requests())

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.failed_docs == 0 and job.error == ""
    states = dict(WebhookDelivery.objects.values_list("url", "state"))
    assert states[good.url("/ok")] == DeliveryState.DELIVERED
    assert states[bad.url("/broken")] == DeliveryState.PENDING  # retried later, not failed yet
    actors = set(JobEvent.objects.filter(job=job, kind="webhook").values_list("actor", flat=True))
    assert actors == {"w-alerts"}


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def counters(job: ReindexJob) -> dict[str, Any]:
    """What a job's run decides, beside its webhooks."""
    fields = [
        "status",
        "total_docs",
        "processed_docs",
        "failed_docs",
        "skipped_docs",
        "batches_done",
        "batches_failed",
        "retries",
        "error",
    ]
    values: dict[str, Any] = ReindexJob.objects.filter(pk=job.pk).values(*fields).get()
    return values


def timeline(job: ReindexJob) -> list[tuple[str, str]]:
    """The job's events other than `webhook`, as (kind, detail), in order; its collection's
    name (the one thing a twin job must change) as COLLECTION."""
    events = (
        JobEvent.objects.filter(job=job)
        .exclude(kind=EventKind.WEBHOOK)
        .order_by("at", "id")
        .values_list("kind", "detail")
    )
    return [(kind, detail.replace(job.collection, "COLLECTION")) for kind, detail in events]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_worker_subprocess__a_hanging_webhook_holds_neither_the_next_job_nor_the_last(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    first = make_job(make_corpus(30, name="first.jsonl"), batch_size=10, collection="first")
    second = make_job(make_corpus(20, name="second.jsonl"), batch_size=10, collection="second")
    # The first request (the first job's completion) is held until released; the rest get 200.
    with hook_server(("hold", 120.0)) as hook:
        worker = processes.worker("w-hang", burst=False, env={"REINDEXER_WEBHOOK_URLS": hook.url()})
        wait_until(
            lambda: hook.holding.is_set() and row(second).status == JobStatus.COMPLETED,
            what="the second job to complete while the first one's webhook hangs",
        )
        assert hook.holding.is_set(), "the held request was answered before the checks"
        assert [r.body["job"]["id"] for r in hook.requests()][:1] == [first.pk]
        done = row(second)
        assert (done.processed_docs, done.failed_docs, done.error) == (20, 0, "")
        report = verify_job(done)
        assert (report["in_store"], report["missing"]) == (20, 0)
        held = row(first)
        assert (held.status, held.processed_docs, held.failed_docs, held.batches_done) == (
            JobStatus.COMPLETED,
            30,
            0,
            3,
        )

        hook.release()
        wait_until(
            lambda: JobEvent.objects.filter(job=first, kind=EventKind.WEBHOOK).exists(),
            what="the first job's delivery to be recorded on its timeline",
        )
        worker.terminate()
        code, _, err = finish(worker)
        assert code == 0, err

    delivery = WebhookDelivery.objects.get(job=first)
    # Answered once released, or cut by the dispatcher's own timeout before that.
    assert delivery.response_code == 200 or delivery.error.startswith("timed out"), delivery.error
    detail = JobEvent.objects.filter(job=first, kind=EventKind.WEBHOOK).values_list(
        "detail", flat=True
    )[0]
    assert detail.startswith("completed ")
    assert row(first).status == JobStatus.COMPLETED


def test_worker_subprocess__failing_and_refused_webhooks_leave_a_running_job_as_without_them(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    corpus = make_corpus(600, name="corpus.jsonl")
    # Slow enough (60 batches of 50 ms at least) that the warm-up job's failed alerts are
    # retried while it runs; a poisoned document gives it a failure and an error to compare.
    store = "flaky(sqlite-vec,latency=50,poison=doc-7)"
    # The twin first, while the outbox is empty: the same corpus and spec, run by a worker
    # with no webhook at all (later, its dispatcher would retry the others' deliveries).
    twin = make_job(corpus, batch_size=10, store=store, collection="c-twin")
    code, _, err = finish(processes.worker("w-twin", burst=True))
    assert code == 0, err
    assert not WebhookDelivery.objects.exists()

    warm_up = make_job(make_corpus(5, name="warm.jsonl"), collection="warm")
    watched = make_job(corpus, batch_size=10, store=store, collection="c-watched")
    with hook_server(*[500] * 1000) as failing:
        refused = f"http://127.0.0.1:{closed_port()}/hook"
        urls = f"{failing.url()} {refused}"
        worker = processes.worker("w-alerts", burst=False, env={"REINDEXER_WEBHOOK_URLS": urls})
        wait_until(
            lambda: (
                WebhookDelivery.objects.filter(job=watched, url=refused, attempts__gte=1)
                .exclude(error="")
                .exists()
                and WebhookDelivery.objects.filter(
                    job=watched, url=failing.url(), response_code=500
                ).exists()
            ),
            timeout=60,  # a guard, not a measure: a loaded machine runs 60 batches slowly
            what="both webhooks to have failed for the watched job",
        )
        worker.terminate()
        code, _, err = finish(worker)
        assert code == 0, err

    assert counters(watched) == counters(twin)
    assert counters(watched)["status"] == JobStatus.COMPLETED
    assert counters(watched)["failed_docs"] == 1
    assert timeline(watched) == timeline(twin)
    assert list(watched.failures.values_list("doc_ids", flat=True)) == list(
        twin.failures.values_list("doc_ids", flat=True)
    )
    # The failing webhooks were at work while the watched job ran: retries of the warm-up
    # job's alert are on the timeline between its claim and its end.
    claimed, ended = (
        JobEvent.objects.filter(job=watched, kind=kind).values_list("at", flat=True).get()
        for kind in (EventKind.CLAIMED, EventKind.COMPLETED)
    )
    assert JobEvent.objects.filter(
        job=warm_up, kind=EventKind.WEBHOOK, at__gt=claimed, at__lt=ended
    ).exists()
    errors = set(WebhookDelivery.objects.filter(url=refused).values_list("error", flat=True))
    assert errors == {"connection refused"}
    assert set(
        WebhookDelivery.objects.filter(url=failing.url()).values_list("response_code", flat=True)
    ) == {500}
