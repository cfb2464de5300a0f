"""Resume after an outage, for real: a worker subprocess writes to a real sqlite-vec store that
another process locks, its circuit breaker fails the job, the outage ends, the operator resumes
(command line or API), and the same job completes with its counters continued: nothing lost and
nothing written twice, as `reindex verify` sees it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.models import ApiToken
from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.integration.conftest import Processes, event_kinds, finish, wait_until
from tests.integration.store_outage import (
    BREAKER_SECONDS,
    OUTAGE_BATCH,
    OUTAGE_DOCS,
    OUTAGE_SPEC,
    exclusive_lock,
    store_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]


def fail_by_outage(job: ReindexJob, data_dir: Path, processes: Processes) -> ReindexJob:
    """Run `job` in a worker until a store outage fails it, two batches or more in; the lock is
    released before this returns (the outage has ended)."""
    worker = processes.worker("w-before")
    wait_until(
        lambda: ReindexJob.objects.get(pk=job.pk).batches_done >= 2, what="two batches written"
    )
    with exclusive_lock(store_file(data_dir, job)):
        wait_until(
            lambda: ReindexJob.objects.get(pk=job.pk).status == JobStatus.FAILED,
            timeout=BREAKER_SECONDS,
            what="the circuit breaker to fail the job",
        )
    code, _, err = finish(worker)
    assert code == 0, err
    job.refresh_from_db()
    return job


def resume_and_finish(
    job: ReindexJob, processes: Processes, resume: Callable[[ReindexJob], None]
) -> ReindexJob:
    counters = (job.processed_docs, job.batches_done)
    resume(job)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert (job.processed_docs, job.batches_done) == counters
    code, _, err = finish(processes.worker("w-after"))
    assert code == 0, err
    job.refresh_from_db()
    return job


def by_cli(processes: Processes) -> Callable[[ReindexJob], None]:
    def resume(job: ReindexJob) -> None:
        done = processes.run("reindex", "resume", str(job.pk))
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        assert f"job {job.pk}: queued to resume from {job.processed_docs}" in done.stdout

    return resume


def by_api(operator: User) -> Callable[[ReindexJob], None]:
    token = ApiToken.issue(operator, "resume test")[1]

    def resume(job: ReindexJob) -> None:
        client = Client(enforce_csrf_checks=True)
        response = client.post(
            f"/api/jobs/{job.pk}/resume/", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "pending"

    return resume


@pytest.mark.parametrize("via", ["cli", "api"])
def test_resume__continues_the_failed_job_from_its_checkpoint_after_a_store_outage(
    make_corpus: Callable[..., Path],
    make_job: MakeJob,
    data_dir: Path,
    processes: Processes,
    operator: User,
    via: str,
) -> None:
    job = make_job(make_corpus(OUTAGE_DOCS), **OUTAGE_SPEC)

    failed = fail_by_outage(job, data_dir, processes)
    assert failed.error.startswith("store unreachable: 8 transient failures in a row")
    assert "database is locked" in failed.error
    assert OUTAGE_BATCH * 2 <= failed.processed_docs < OUTAGE_DOCS
    assert failed.processed_docs == failed.batches_done * OUTAGE_BATCH
    assert (failed.failed_docs, failed.failures.count()) == (0, 0)  # the open batch was not kept
    at_failure, started_at = failed.processed_docs, failed.started_at

    resume = by_cli(processes) if via == "cli" else by_api(operator)
    done = resume_and_finish(job, processes, resume)

    # The same job, its counters continued, not restarted: ten batches in all, none twice.
    assert done.pk == job.pk and ReindexJob.objects.count() == 1
    assert done.status == JobStatus.COMPLETED
    assert (done.processed_docs, done.failed_docs, done.total_docs) == (OUTAGE_DOCS, 0, OUTAGE_DOCS)
    assert done.batches_done == OUTAGE_DOCS // OUTAGE_BATCH
    assert done.started_at == started_at and done.error == ""
    assert done.reclaims_without_progress == 0

    verified = processes.run("reindex", "verify", str(job.pk), "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert (report["missing"], report["duplicates"]) == (0, 0)
    assert report["in_store"] == report["source_docs"] == OUTAGE_DOCS

    # The timeline tells the story: the outage's failure, the resume, and the rest of the run.
    kinds = event_kinds(job)
    assert kinds[kinds.index(EventKind.FAILED) :] == [
        EventKind.FAILED,
        EventKind.RESUMED,
        EventKind.CLAIMED,
        EventKind.CHECKPOINT_RESUMED,
        EventKind.COMPLETED,
    ]
    resumed = job.events.get(kind=EventKind.RESUMED)
    assert resumed.actor == ("cli" if via == "cli" else "operator")
    assert resumed.detail.startswith(
        f"resuming from {at_failure} processed; it had failed: store unreachable"
    )
    assert "database is locked" in resumed.detail
    checkpoint = job.events.get(kind=EventKind.CHECKPOINT_RESUMED)
    assert checkpoint.detail.startswith(f"resuming after {at_failure} documents")
