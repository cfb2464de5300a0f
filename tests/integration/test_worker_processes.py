"""Real worker subprocesses: cancel from elsewhere, SIGKILL and reclaim, SIGTERM, contention."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from reindexer.jobs import cancel_job
from reindexer.models import JobEvent, JobStatus, ReindexJob
from reindexer.verify import verify_job
from tests.integration.conftest import (
    Processes,
    event_kinds,
    finish,
    wait_for_output,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLOW_STORE = "flaky(sqlite-vec,latency=40)"
FAST_LEASE = {"REINDEXER_LEASE_SECONDS": "1.5", "REINDEXER_HEARTBEAT_SECONDS": "0.3"}

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def wait_for_progress(job: ReindexJob, at_least: int) -> None:
    wait_until(lambda: row(job).processed_docs >= at_least, what=f"job {job.pk} to pass {at_least}")


def test_cancel__running_job_stops_at_batch_boundary(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(600), batch_size=10, store=SLOW_STORE)
    worker = processes.worker("w-cancel")
    wait_for_progress(job, 30)

    cancel_job(job)  # from this process, while the worker runs the job in its own
    requested_at = job.processed_docs
    assert job.status == JobStatus.RUNNING and job.is_cancelling

    wait_until(lambda: row(job).status == JobStatus.CANCELLED, timeout=10, what="the cancel")
    code, _, err = finish(worker)
    assert code == 0, err
    job = row(job)
    assert requested_at <= job.processed_docs <= requested_at + job.batch_size
    assert job.processed_docs < 600
    assert job.lease_token is None and job.finished_at is not None
    assert event_kinds(job)[-2:] == ["cancel_requested", "cancelled"]


def test_crash__killed_worker_job_is_reclaimed_after_the_lease_and_completed(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(500), batch_size=10, store=SLOW_STORE)
    first = processes.worker("w-doomed", env=FAST_LEASE)
    wait_for_progress(job, 50)
    os.kill(first.pid, signal.SIGKILL)
    assert finish(first)[0] == -signal.SIGKILL
    crashed = row(job)
    assert crashed.status == JobStatus.RUNNING and crashed.worker == "w-doomed"
    assert 0 < crashed.processed_docs < 500

    lease = timedelta(seconds=float(FAST_LEASE["REINDEXER_LEASE_SECONDS"]))
    wait_until(
        lambda: row(job).heartbeat_at < timezone.now() - lease,  # type: ignore[operator]
        timeout=10,
        what="the dead worker's lease to expire",
    )
    second = processes.worker("w-rescuer", env=FAST_LEASE)
    code, _, err = finish(second, timeout=60)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (500, 500, 0)
    assert event_kinds(job) == [
        "created",
        "claimed",
        "reclaimed",
        "checkpoint_resumed",
        "completed",
    ]
    actors = dict(JobEvent.objects.filter(job=job).values_list("kind", "actor"))
    assert (actors["claimed"], actors["reclaimed"]) == ("w-doomed", "w-rescuer")

    verify = processes.run("reindex", "verify", str(job.pk), "--json")
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert (report["source_docs"], report["in_store"], report["missing"], report["duplicates"]) == (
        500,
        500,
        0,
        0,
    )


def test_sigterm__job_is_handed_back_with_its_checkpoint_and_resumed_by_the_next_worker(
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
    run_burst_worker: Callable[..., None],
) -> None:
    job = make_job(make_corpus(500), batch_size=10, store=SLOW_STORE)
    first = processes.worker("w-leaving", burst=False)
    wait_for_progress(job, 30)
    first.send_signal(signal.SIGTERM)
    code, _, err = finish(first)
    assert code == 0, err

    handed = row(job)
    assert handed.status == JobStatus.PENDING
    assert handed.checkpoint and handed.checkpoint["offset"] > 0
    assert 0 < handed.processed_docs < 500
    assert (handed.worker, handed.lease_token, handed.heartbeat_at) == ("", None, None)
    assert event_kinds(job)[-1] == "handed_back"

    run_burst_worker("w-next")
    job = row(job)
    assert job.status == JobStatus.COMPLETED
    assert (job.processed_docs, job.failed_docs) == (500, 0)
    assert event_kinds(job) == [
        "created",
        "claimed",
        "handed_back",
        "claimed",
        "checkpoint_resumed",
        "completed",
    ]
    report = verify_job(job)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (500, 0, 0)


def test_sigterm__idle_worker_exits_at_once(processes: Processes) -> None:
    worker = processes.worker("w-idle", burst=False)
    wait_for_output(worker, "worker w-idle started")
    worker.send_signal(signal.SIGTERM)
    code, _, err = finish(worker, timeout=10)
    assert code == 0, err


def test_contention__two_workers_claim_each_of_20_jobs_exactly_once(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    path = make_corpus(20)
    jobs = [make_job(path, batch_size=5, collection=f"c{i}") for i in range(20)]
    workers = [processes.worker("w-a"), processes.worker("w-b")]
    for worker in workers:
        code, _, err = finish(worker, timeout=90)
        assert code == 0, err

    for job in jobs:
        job = row(job)
        assert job.status == JobStatus.COMPLETED, job.error
        assert job.processed_docs == 20
        kinds = event_kinds(job)
        assert kinds.count("claimed") == 1, kinds
        assert "reclaimed" not in kinds
    assert JobEvent.objects.filter(kind="claimed").count() == 20


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="cutting a worker's database connection needs PostgreSQL's pg_terminate_backend; "
    "the PostgreSQL run of the suite covers it",
)
def test_database_blink__the_worker_holding_the_lease_resumes_it_without_a_reclaim(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(400), batch_size=10, store=SLOW_STORE)
    worker = processes.worker("w-blink", burst=False, env=FAST_LEASE)
    wait_for_progress(job, 50)
    with connection.cursor() as cursor:  # every other session on the test database: the worker's
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    try:
        wait_until(lambda: row(job).status == JobStatus.COMPLETED, timeout=30, what="the resume")
    except AssertionError as exc:
        worker.kill()
        raise AssertionError(f"{exc}; the worker said:\n{finish(worker)[2]}") from None
    assert worker.poll() is None, "the worker must survive a database blink"
    os.kill(worker.pid, signal.SIGTERM)
    code, _, err = finish(worker)
    assert code == 0, err
    assert "job database unavailable" in err or "heartbeat failed" in err, err
    assert "Traceback" not in err, err
    # It reconnected and carried on from its checkpoint under the lease it still held.
    kinds = event_kinds(row(job))
    assert "reclaimed" not in kinds and kinds.count("claimed") == 1, kinds
    assert "checkpoint_resumed" in kinds, kinds
    report = verify_job(row(job))
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, 400)
