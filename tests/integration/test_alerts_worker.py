"""End to end: a real worker subprocess runs a job and its dispatcher alerts a real HTTP server;
a webhook that keeps failing beside it changes nothing for the job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.models import DeliveryState, JobEvent, JobStatus, ReindexJob, WebhookDelivery
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
