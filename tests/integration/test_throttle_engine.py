"""The live throttle, by behaviour, never by the clock.

In process, on the engine's real bell (the event a NOTIFY or a stop rings): a limit set
mid-run is read at the next batch's commit, so exactly one more batch is written before the
pacer asks to wait, and lifting the limit while it waits lets the job go on. In worker
subprocesses, the real wiring: a lift (through NOTIFY on PostgreSQL, its poll set to a minute
so only the bell can do it; by its poll on SQLite) and a cancel free a worker that a very low
limit holds. How fast a job runs under a limit is measured in bench/throttle.py."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from reindexer.engine import EngineOptions, JobRunner, Outcome
from reindexer.jobs import Throttled, cancel_job, set_throttle
from reindexer.models import EventKind, JobEvent, JobStatus, ReindexJob
from reindexer.signals import batch_committed
from tests.integration.conftest import Processes, event_kinds, finish, wait_until
from tests.integration.test_incremental import doc, write_corpus

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
BATCH = 10
POLL = 60.0  # far above any wait a test lets run: a wait step is min(what is left, POLL)


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def set_limit(job: ReindexJob, limit: float | None) -> Throttled:
    """As the dashboard, the API and `reindex throttle` do: the guarded write, its `throttled`
    event and the announcement (a NOTIFY to the workers)."""
    return set_throttle(row(job), limit or 0, user=None)


def stop_cleanly(worker: subprocess.Popen[str]) -> None:
    """SIGTERM the worker: it exits 0 (its stderr in the failure otherwise)."""
    worker.terminate()
    code, _, err = finish(worker)
    assert code == 0, err


def worker_env() -> dict[str, str]:
    # On PostgreSQL a minute's poll: a wait that ends sooner was ended by the NOTIFY.
    return {"REINDEXER_POLL_SECONDS": "60"} if connection.vendor == "postgresql" else {}


class RecordingBell(threading.Event):
    """The runner's bell, noting each pacing wait the engine asks for in `timeline`; its first
    wait runs `on_wait` (an operator acting while the job is known to wait) before waiting."""

    def __init__(self, timeline: list[str], on_wait: Callable[[], None]) -> None:
        super().__init__()
        self.timeline = timeline
        self.on_wait = on_wait

    def wait(self, timeout: float | None = None) -> bool:
        self.timeline.append(f"wait {timeout:g}")
        if self.timeline.count(f"wait {timeout:g}") == 1:
            self.on_wait()
        return super().wait(timeout)


@pytest.fixture
def long_poll(settings: Any) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, poll_seconds=POLL)


@pytest.fixture
def batches(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """A timeline of the engine's batches: "batch" each time one commits (batch_committed)."""
    timeline: list[str] = []
    uid = f"throttle-test-{request.node.name}"
    batch_committed.connect(lambda **_: timeline.append("batch"), weak=False, dispatch_uid=uid)
    yield timeline
    batch_committed.disconnect(dispatch_uid=uid)


def run_in_process(job: ReindexJob, bell: threading.Event) -> str:
    token = job.claim("w-paced", lease_seconds=30)
    job.refresh_from_db()
    runner = JobRunner(
        job, token, "w-paced", stop=threading.Event(), options=EngineOptions(), bell=bell
    )
    return runner.run()


@pytest.mark.usefixtures("long_poll")
def test_throttle__a_limit_set_mid_run_holds_the_job_from_its_next_batch_until_lifted(
    data_dir: Path, make_job: MakeJob, batches: list[str]
) -> None:
    job = make_job(write_corpus(data_dir, [doc(i) for i in range(100)]), batch_size=BATCH)
    held: list[ReindexJob] = []

    def throttle_after_the_third_batch(**_: object) -> None:
        if batches.count("batch") == 3 and not held:
            set_limit(job, 0.1)
            batches.append("limit 0.1")

    def lift() -> None:
        held.append(row(job))
        set_limit(job, None)
        batches.append("lifted")
        bell.set()  # what the worker's LISTEN thread does on the NOTIFY

    bell = RecordingBell(batches, lift)
    batch_committed.connect(throttle_after_the_third_batch, weak=False, dispatch_uid="mid-run")
    try:
        assert run_in_process(job, bell) == Outcome.COMPLETED
    finally:
        batch_committed.disconnect(dispatch_uid="mid-run")

    # Batch 4 ran under the limit read at batch 3's commit (none); its own commit read 0.1, so
    # batch 5 had to wait 10 / 0.1 = 100 s: the wait asked for its first step, the whole poll.
    # Once lifted, the job ran to its end without another wait.
    assert (
        batches
        == ["batch"] * 3 + ["limit 0.1", "batch", f"wait {POLL:g}", "lifted"] + ["batch"] * 6
    )
    assert (held[0].status, held[0].processed_docs) == (JobStatus.RUNNING, 4 * BATCH)
    done = row(job)
    assert (done.status, done.processed_docs, done.batches_done) == (JobStatus.COMPLETED, 100, 10)
    assert list(
        JobEvent.objects.filter(job=job, kind=EventKind.THROTTLED)
        .order_by("id")
        .values_list("detail", flat=True)
    ) == ["limit set to 0.1 docs/s", "limit lifted"]


@pytest.mark.usefixtures("long_poll")
def test_throttle__a_cancel_rung_in_ends_a_pacing_wait_at_the_batch_boundary(
    data_dir: Path, make_job: MakeJob, batches: list[str]
) -> None:
    job = make_job(
        write_corpus(data_dir, [doc(i) for i in range(100)]),
        batch_size=BATCH,
        max_docs_per_second=0.1,
    )

    def cancel() -> None:
        cancel_job(row(job))  # as every surface cancels: the request, and its NOTIFY
        bell.set()

    bell = RecordingBell(batches, cancel)
    assert run_in_process(job, bell) == Outcome.CANCELLED
    assert batches == ["batch", f"wait {POLL:g}"]
    done = row(job)
    assert (done.status, done.processed_docs) == (JobStatus.CANCELLED, BATCH)


def test_throttle__a_lifted_limit_frees_a_waiting_worker_subprocess(
    data_dir: Path, make_job: MakeJob, processes: Processes
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(200)])
    # 0.1 docs/s: after its first batch of 10 the job may begin its next only 100 s later.
    job = make_job(source, batch_size=BATCH, max_docs_per_second=0.1)
    worker = processes.worker("w-paced", burst=False, env=worker_env())
    wait_until(lambda: row(job).processed_docs == BATCH, what="the first batch")
    lifted = set_limit(job, None)
    # Still held when the lift came; it is the lift that lets the rest run.
    assert lifted.changed
    assert (lifted.job.status, lifted.job.processed_docs) == (JobStatus.RUNNING, BATCH)
    wait_until(lambda: row(job).status == JobStatus.COMPLETED, what="the job to complete")
    assert row(job).processed_docs == 200
    kinds = event_kinds(job)
    assert kinds.index(EventKind.THROTTLED) < kinds.index(EventKind.COMPLETED)
    stop_cleanly(worker)


def test_throttle__a_cancel_ends_a_pacing_wait_in_a_worker_subprocess(
    data_dir: Path, make_job: MakeJob, processes: Processes
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(100)])
    job = make_job(source, batch_size=BATCH, max_docs_per_second=0.1)
    worker = processes.worker("w-cancel", burst=False, env=worker_env())
    wait_until(lambda: row(job).processed_docs == BATCH, what="the first batch")
    cancel_job(row(job))  # as every surface cancels: the request, and its NOTIFY
    wait_until(lambda: row(job).status == JobStatus.CANCELLED, what="the cancel")
    assert row(job).processed_docs == BATCH
    stop_cleanly(worker)
