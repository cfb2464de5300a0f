"""--cleanup full on real sqlite-vec stores: documents that left the source are deleted from the
store and from the hash records once the job completes, also for documents written before
hashes existed and for sliced jobs; a failed or cancelled job deletes nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from reindexer.engine import EngineOptions, JobRunner, Outcome
from reindexer.models import ContentHash, EventKind, JobEvent, JobStatus, ReindexJob
from tests.integration.conftest import wait_until
from tests.integration.test_incremental import (
    doc,
    finished,
    hashed_ids,
    stored_ids,
    write_corpus,
)

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Run = Callable[..., None]
ALL = {f"doc-{i}" for i in range(50)}
GONE = {"doc-3", "doc-17", "doc-30", "doc-31", "doc-49"}


@pytest.fixture
def written(data_dir: Path, make_job: MakeJob, run_burst_worker: Run) -> Path:
    """50 documents written; then 5 of them leave the source."""
    source = write_corpus(data_dir, [doc(i) for i in range(50)])
    job = make_job(source, batch_size=10)
    run_burst_worker()
    finished(job)
    write_corpus(data_dir, [doc(i) for i in range(50) if f"doc-{i}" not in GONE])
    return source


def cleaned_up(job: ReindexJob) -> list[str]:
    return list(
        JobEvent.objects.filter(job=job, kind=EventKind.CLEANED_UP).values_list("detail", flat=True)
    )


@pytest.mark.parametrize("mode", ["incremental", "full"])
@pytest.mark.parametrize("slices", [1, 2])
def test_cleanup__deletes_what_left_the_source_from_the_store_and_the_records(
    written: Path, make_job: MakeJob, run_burst_worker: Run, mode: str, slices: int
) -> None:
    job = make_job(written, batch_size=10, mode=mode, cleanup="full", slices=slices)
    run_burst_worker()
    job = finished(job)
    assert stored_ids(job.collection) == ALL - GONE
    assert hashed_ids(job.collection) == ALL - GONE
    assert cleaned_up(job) == ["deleted 5 documents that left the source"]
    assert not any(cleaned_up(s) for s in ReindexJob.objects.filter(parent=job))


def test_cleanup__also_deletes_documents_written_before_hashes_existed(
    written: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    ContentHash.objects.all().delete()  # a collection from before the records
    job = make_job(written, batch_size=10, mode="incremental", cleanup="full")
    run_burst_worker()
    job = finished(job)
    assert stored_ids(job.collection) == ALL - GONE
    assert cleaned_up(job) == ["deleted 5 documents that left the source"]


def test_cleanup__a_failed_job_deletes_nothing(
    written: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        written,
        batch_size=10,
        cleanup="full",
        store="flaky(sqlite-vec,poison=doc-5)",
        max_failed_ratio=0.0,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert stored_ids(job.collection) == ALL
    assert hashed_ids(job.collection) == ALL
    assert cleaned_up(job) == []


def test_cleanup__a_cancelled_job_deletes_nothing(written: Path, make_job: MakeJob) -> None:
    # Held by its rate limit after its first batch, then cancelled while it waits.
    job = make_job(written, batch_size=10, cleanup="full", max_docs_per_second=0.1)
    token = job.claim("w-clean", lease_seconds=30)
    job.refresh_from_db()
    runner = JobRunner(job, token, "w-clean", stop=threading.Event(), options=EngineOptions())
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(runner.run())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: ReindexJob.objects.get(pk=job.pk).processed_docs == 10, what="one batch")
        ReindexJob.objects.get(pk=job.pk).request_cancel("test")
    finally:
        thread.join(timeout=60)
    assert outcome == [Outcome.CANCELLED]
    assert stored_ids(job.collection) == ALL
    assert cleaned_up(job) == []
