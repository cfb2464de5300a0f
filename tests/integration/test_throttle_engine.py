"""The live throttle in worker subprocesses: a limit set mid-run holds the job from its next
batch, and lifting it frees a worker that waits under a very low limit at once: through NOTIFY
on PostgreSQL (its poll set to a minute, so only the bell can do it), by its poll on SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from reindexer.jobs import cancel_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import announce
from tests.integration.conftest import Processes, finish, wait_until
from tests.integration.test_incremental import doc, write_corpus

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
BATCH = 10


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def set_limit(job: ReindexJob, limit: float | None) -> None:
    """What the throttle's API and command do: write the field, and announce the change."""
    ReindexJob.objects.filter(pk=job.pk).update(max_docs_per_second=limit)
    announce(job.pk)


def worker_env() -> dict[str, str]:
    # On PostgreSQL a minute's poll: a wait that ends sooner was ended by the NOTIFY.
    return {"REINDEXER_POLL_SECONDS": "60"} if connection.vendor == "postgresql" else {}


def test_throttle__a_lifted_limit_frees_a_waiting_worker_at_once(
    data_dir: Path, make_job: MakeJob, processes: Processes
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(200)])
    # 0.1 docs/s: after its first batch of 10 the job would wait 100 s before the next.
    job = make_job(source, batch_size=BATCH, max_docs_per_second=0.1)
    worker = processes.worker("w-paced", burst=False, env=worker_env())
    wait_until(lambda: row(job).processed_docs == BATCH, what="the first batch")
    time.sleep(1.0)  # well inside its wait
    held = row(job)
    assert (held.status, held.processed_docs) == (JobStatus.RUNNING, BATCH)
    set_limit(job, None)
    wait_until(
        lambda: row(job).status == JobStatus.COMPLETED,
        timeout=30,
        what="the job to complete once its limit was lifted",
    )
    assert row(job).processed_docs == 200
    worker.terminate()
    code, _, err = finish(worker)
    assert code == 0, err


def test_throttle__a_limit_set_mid_run_holds_the_job_from_its_next_batch(
    data_dir: Path, make_job: MakeJob, processes: Processes
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(400)])
    job = make_job(source, batch_size=BATCH, store="flaky(sqlite-vec,latency=50)")
    worker = processes.worker("w-live", burst=False, env=worker_env())
    wait_until(lambda: row(job).processed_docs >= 3 * BATCH, what="three batches")
    set_limit(job, 0.1)
    seen = row(job).processed_docs
    # The batch in flight, and at most the one after it, run before the limit holds it.
    time.sleep(3.0)
    held = row(job)
    assert held.status == JobStatus.RUNNING
    assert seen <= held.processed_docs <= seen + 2 * BATCH
    time.sleep(1.0)
    assert row(job).processed_docs == held.processed_docs  # waiting, not writing
    set_limit(job, None)
    wait_until(lambda: row(job).status == JobStatus.COMPLETED, timeout=60, what="completion")
    worker.terminate()
    code, _, err = finish(worker)
    assert code == 0, err


def test_throttle__a_cancel_ends_a_pacing_wait_at_once(
    data_dir: Path, make_job: MakeJob, processes: Processes
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(100)])
    job = make_job(source, batch_size=BATCH, max_docs_per_second=0.1)
    worker = processes.worker("w-cancel", burst=False, env=worker_env())
    wait_until(lambda: row(job).processed_docs == BATCH, what="the first batch")
    cancel_job(row(job))  # as every surface cancels: the request, and its NOTIFY
    wait_until(lambda: row(job).status == JobStatus.CANCELLED, timeout=30, what="the cancel")
    assert row(job).processed_docs == BATCH
    worker.terminate()
    code, _, err = finish(worker)
    assert code == 0, err
