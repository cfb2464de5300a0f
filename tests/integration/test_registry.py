"""The worker registry: registration, renewal idle and busy, current job, jobs done, stop, prune."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from reindexer import registry
from reindexer.lease import LeaseKeeper
from reindexer.models import JobStatus, ReindexJob, WorkerProcess
from reindexer.registry import WorkerRegistration
from reindexer.worker import Worker, WorkerOptions
from tests.integration.conftest import Processes, claimed, wait_for_output, wait_until

pytestmark = pytest.mark.django_db


def test_register__records_host_pid_and_start_of_this_process() -> None:
    before = timezone.now()
    assert WorkerRegistration("w-reg", heartbeat_seconds=5).register()
    row = WorkerProcess.objects.get(name="w-reg")
    assert (row.host, row.pid) == (socket.gethostname(), os.getpid())
    assert row.started_at >= before
    assert row.heartbeat_at == row.started_at
    assert row.stopped_at is None
    assert row.current_job is None
    assert row.jobs_done == 0


def test_register__a_reused_worker_id_takes_over_its_row_with_a_new_pid_and_start() -> None:
    old_start = timezone.now() - timedelta(hours=2)
    WorkerProcess.objects.create(
        name="w-again",
        host="old-host",
        pid=1,
        started_at=old_start,
        heartbeat_at=old_start,
        stopped_at=old_start,
        jobs_done=7,
    )
    WorkerRegistration("w-again", heartbeat_seconds=5).register()
    row = WorkerProcess.objects.get(name="w-again")
    assert WorkerProcess.objects.filter(name="w-again").count() == 1
    assert (row.host, row.pid) == (socket.gethostname(), os.getpid())
    assert row.started_at > old_start
    assert row.stopped_at is None
    assert row.jobs_done == 0


def test_register__prunes_workers_not_seen_for_more_than_a_day() -> None:
    now = timezone.now()
    for name, age in [("ancient", timedelta(days=2)), ("recent", timedelta(hours=23))]:
        WorkerProcess.objects.create(
            name=name, host="h", pid=1, started_at=now - age, heartbeat_at=now - age
        )
    WorkerRegistration("w-new", heartbeat_seconds=5).register()
    assert set(WorkerProcess.objects.values_list("name", flat=True)) == {"recent", "w-new"}


def test_beat_if_due__renews_at_the_heartbeat_interval_not_at_every_wake_up() -> None:
    registration = WorkerRegistration("w-idle", heartbeat_seconds=3600)
    registration.register()
    long_ago = timezone.now() - timedelta(minutes=5)
    WorkerProcess.objects.filter(name="w-idle").update(heartbeat_at=long_ago)
    registration.beat_if_due()  # within the interval: no write
    assert WorkerProcess.objects.get(name="w-idle").heartbeat_at == long_ago
    registration.heartbeat_seconds = 0.0
    registration.beat_if_due()
    assert WorkerProcess.objects.get(name="w-idle").heartbeat_at > long_ago


def test_job_started_and_ended__set_then_clear_the_current_job_and_count_finished_jobs(
    make_job: Callable[..., ReindexJob],
) -> None:
    job = make_job()
    registration = WorkerRegistration("w-busy", heartbeat_seconds=5)
    registration.register()
    registration.job_started(job)
    assert WorkerProcess.objects.get(name="w-busy").current_job_id == job.pk
    registration.job_ended(finished=True)
    registration.job_started(job)
    registration.job_ended(finished=False)  # handed back: not done here
    row = WorkerProcess.objects.get(name="w-busy")
    assert row.current_job_id is None
    assert row.jobs_done == 1


@pytest.mark.django_db(transaction=True)  # the keeper's thread has its own connection
def test_lease_keeper__renews_the_registry_row_of_the_worker_holding_the_job(
    make_job: Callable[..., ReindexJob],
) -> None:
    job = make_job()
    token = claimed(job, worker="w-lease")
    job.refresh_from_db()
    registration = WorkerRegistration("w-lease", heartbeat_seconds=5)
    registration.register()
    long_ago = timezone.now() - timedelta(minutes=5)
    WorkerProcess.objects.filter(name="w-lease").update(heartbeat_at=long_ago)
    keeper = LeaseKeeper(job, token, interval=0.02).start()
    try:
        wait_until(
            lambda: WorkerProcess.objects.get(name="w-lease").heartbeat_at > long_ago,
            what="the lease keeper to renew the worker's row",
        )
    finally:
        keeper.stop()
    assert not keeper.lost.is_set()


def test_registry_writes__a_failure_is_logged_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registration = WorkerRegistration("w-broken", heartbeat_seconds=0)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE reindexer_workerprocess")
    assert registration.register() is False
    registration.beat_if_due()
    registration.stopped()
    assert registry.renew("w-broken") is False
    assert "worker registry: cannot register w-broken" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_worker_run__registers_counts_its_jobs_and_marks_a_clean_stop(
    make_corpus: Callable[..., Path], make_job: Callable[..., ReindexJob]
) -> None:
    first = make_job(make_corpus(5))
    second = make_job(make_corpus(3, name="other.jsonl"), collection="other")
    processed = Worker(WorkerOptions(worker_id="w-burst", burst=True)).run()
    assert processed == 2
    row = WorkerProcess.objects.get(name="w-burst")
    assert row.jobs_done == 2
    assert row.current_job is None
    assert row.stopped_at is not None
    assert {j.status for j in ReindexJob.objects.filter(pk__in=[first.pk, second.pk])} == {
        JobStatus.COMPLETED
    }


@pytest.mark.django_db(transaction=True)
def test_worker_subprocess__shows_its_current_job_while_running_and_stops_cleanly_on_sigterm(
    make_corpus: Callable[..., Path],
    make_job: Callable[..., ReindexJob],
    processes: Processes,
) -> None:
    job = make_job(make_corpus(5), store="flaky(sqlite-vec,latency=400)", batch_size=1)
    proc = processes.worker("w-sub", burst=False, env={"REINDEXER_HEARTBEAT_SECONDS": "0.2"})
    wait_until(
        lambda: WorkerProcess.objects.filter(name="w-sub", current_job=job.pk).exists(),
        what="the worker to show job as its current job",
    )
    row = WorkerProcess.objects.get(name="w-sub")
    assert row.pid == proc.pid
    first_beat = row.heartbeat_at
    wait_until(
        lambda: WorkerProcess.objects.get(name="w-sub").heartbeat_at > first_beat,
        what="the busy worker to renew its row",
    )
    proc.send_signal(signal.SIGTERM)
    wait_for_output(proc, "stopping")
    assert proc.wait(timeout=30) == 0
    row = WorkerProcess.objects.get(name="w-sub")
    assert row.stopped_at is not None
    assert row.current_job is None
