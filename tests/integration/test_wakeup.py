"""Idle workers wake at once: LISTEN/NOTIFY on PostgreSQL, polling on SQLite and as the fallback.

The workers here poll every 60 s unless said otherwise, so a job that runs within
PICKUP_SECONDS was announced to them, not found by a poll.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client

from reindexer.models import JobEvent, JobStatus, ReindexJob
from reindexer.specs import JobSpec
from reindexer.wakeup import application_name, notify_workers
from reindexer.worker import claim_next
from tests.integration.conftest import Processes, finish, wait_for_output, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LONG_POLL = "60"
# Well before the 60 s poll, with room for a loaded CI machine.
PICKUP_SECONDS = 10.0

on_postgresql = connection.vendor == "postgresql"
postgresql_only = pytest.mark.skipif(
    not on_postgresql,
    reason="LISTEN/NOTIFY is PostgreSQL's (SQLite workers poll, as tested below); "
    "the PostgreSQL run of the suite covers it",
)

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


class IdleWorker:
    """A `reindex_worker` subprocess, with what it has written to its log so far."""

    def __init__(self, proc: subprocess.Popen[str], worker_id: str) -> None:
        self.proc = proc
        self.worker_id = worker_id
        self.said = ""

    def wait_for(self, text: str, count: int = 1) -> None:
        """Read the log until `text` has appeared `count` times in all."""
        while self.said.count(text) < count:
            self.said += wait_for_output(self.proc, text)

    def wait_until_idle(self, times: int = 1) -> None:
        """Until the worker has found nothing to claim `times` times since it started (the log
        says so once per idle spell) and, on PostgreSQL, listens."""
        self.wait_for(f"worker {self.worker_id}: idle, waiting for a job", times)
        if on_postgresql:
            self.wait_for(f"worker {self.worker_id}: listening for new jobs")

    def stop(self) -> str:
        """SIGTERM, then the whole log; fails unless it exits 0, at once."""
        self.proc.send_signal(signal.SIGTERM)
        code, _, err = finish(self.proc, timeout=PICKUP_SECONDS)
        self.said += err
        assert code == 0, self.said
        assert "Traceback" not in self.said, self.said
        return self.said


def idle_worker(
    processes: Processes, worker_id: str, poll: str = LONG_POLL, **env: str
) -> IdleWorker:
    """A worker started with nothing to do, once it waits."""
    proc = processes.worker(worker_id, burst=False, env={"REINDEXER_POLL_SECONDS": poll, **env})
    worker = IdleWorker(proc, worker_id)
    worker.wait_until_idle()
    return worker


def started(job_id: int) -> Callable[[], bool]:
    return lambda: ReindexJob.objects.filter(pk=job_id, started_at__isnull=False).exists()


def wait_for_pickup(job_id: int, why: str) -> None:
    wait_until(started(job_id), timeout=PICKUP_SECONDS, what=f"job {job_id} to run ({why})")


def wait_for_completion(job_id: int) -> None:
    wait_until(
        lambda: ReindexJob.objects.get(pk=job_id).status == JobStatus.COMPLETED,
        what=f"job {job_id} to complete",
    )


def claimed_by(job_id: int) -> list[str]:
    return list(
        JobEvent.objects.filter(job_id=job_id, kind="claimed").values_list("actor", flat=True)
    )


def queue_unannounced(collection: str) -> ReindexJob:
    """A pending job inserted with no NOTIFY (as create_job would, less the announcement):
    only a poll finds it."""
    spec = JobSpec.parse({"source": "jsonl:docs.jsonl", "collection": collection})
    return ReindexJob.objects.create(**spec.model_dump(exclude={"name"}), name=spec.job_name)


def psycopg_connect() -> psycopg.Connection[Any]:
    """A connection of the test's own to the test database, for another thread."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or "postgres",
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        autocommit=True,
    )


def listener_backends(worker_id: str) -> list[tuple[int, str]]:
    """(pid, last statement) of the LISTEN connections of `worker_id`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s",
            [application_name(worker_id)],
        )
        return [(int(pid), str(query)) for pid, query in cursor.fetchall()]


def terminate_listener(worker_id: str, conn: Any = None) -> int:
    """pg_terminate_backend of `worker_id`'s LISTEN connections; how many were cut."""
    sql = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s"
    )
    if conn is not None:
        row = conn.execute(sql, [application_name(worker_id)]).fetchone()
        return int(row[0]) if row else 0
    with connection.cursor() as cursor:
        cursor.execute(sql, [application_name(worker_id)])
        return int(cursor.fetchone()[0])


@contextlib.contextmanager
def listener_kept_down(worker_id: str) -> Iterator[None]:
    """Cut `worker_id`'s LISTEN connection every 20 ms, from a thread, until the block ends."""
    done = threading.Event()

    def cut() -> None:
        with psycopg_connect() as conn:
            while not done.wait(0.02):
                terminate_listener(worker_id, conn)

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10)


@postgresql_only
def test_notify__idle_worker_runs_a_new_job_long_before_its_poll(
    make_job: MakeJob, processes: Processes
) -> None:
    worker = idle_worker(processes, "w-notify")
    job = make_job()
    wait_for_pickup(job.pk, "woken by NOTIFY: its poll is 60 s")
    wait_for_completion(job.pk)
    worker.stop()
    assert claimed_by(job.pk) == ["w-notify"]


@postgresql_only
def test_notify__idle_worker_wakes_for_jobs_queued_through_the_cli_and_the_api(
    make_corpus: Corpus, processes: Processes, operator: User
) -> None:
    make_corpus(5)
    worker = idle_worker(processes, "w-cli-api")

    queued = processes.run(
        "reindex", "start", "--source", "jsonl:docs.jsonl", "--collection", "cli"
    )
    assert queued.returncode == 0, queued.stderr
    from_cli = int(queued.stdout.split()[-1])  # it prints the job's id last
    wait_for_pickup(from_cli, "queued by `reindex start`, another process")
    wait_for_completion(from_cli)

    worker.wait_until_idle(times=2)  # back to waiting, so only a NOTIFY can wake it
    client = Client()
    client.force_login(operator)
    response = client.post(
        "/api/jobs/",
        {"source": "jsonl:docs.jsonl", "collection": "api"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    from_api = int(response.json()["id"])
    wait_for_pickup(from_api, "queued through the API")
    wait_for_completion(from_api)

    worker.stop()
    assert claimed_by(from_cli) == claimed_by(from_api) == ["w-cli-api"]


@postgresql_only
def test_notify__a_waiting_job_starts_when_the_job_holding_its_collection_ends(
    make_job: MakeJob, processes: Processes
) -> None:
    # The holder's worker is the fixture's, not a process: the idle worker below cannot have
    # claimed the waiting job before the holder ends, nor anybody but it after.
    holder = make_job(status=JobStatus.RUNNING, collection="shared")
    waiting = make_job(collection="shared")
    worker = idle_worker(processes, "w-waiting")
    assert not started(waiting.pk)(), "the collection is held: the job must wait"

    assert holder.lease_token is not None
    holder.complete(holder.lease_token, "test")
    wait_for_pickup(waiting.pk, "woken by the end of the job holding its collection")
    wait_for_completion(waiting.pk)
    worker.stop()
    assert claimed_by(waiting.pk) == ["w-waiting"]


class RolledBack(Exception):
    pass


@postgresql_only
def test_notify__a_notify_in_a_rolled_back_transaction_wakes_nobody(
    make_corpus: Corpus, processes: Processes
) -> None:
    make_corpus(5)
    # At DEBUG the listener logs each notification it receives.
    worker = idle_worker(processes, "w-rollback", REINDEXER_LOG_LEVEL="DEBUG")
    job = queue_unannounced("quiet")
    with contextlib.suppress(RolledBack), transaction.atomic():
        notify_workers("rolled-back", job.pk)
        raise RolledBack
    notify_workers("committed", job.pk)

    # Notifications arrive in commit order: had the first been sent, it would come first.
    worker.wait_for('"reason": "committed"')
    assert '"reason": "rolled-back"' not in worker.said, worker.said
    wait_for_pickup(job.pk, "woken by the committed NOTIFY only")
    wait_for_completion(job.pk)
    assert '"reason": "rolled-back"' not in worker.stop()


@postgresql_only
def test_listener_cut__worker_polls_meanwhile_says_so_and_listens_again(
    make_corpus: Corpus, processes: Processes
) -> None:
    make_corpus(5)
    worker = idle_worker(processes, "w-cut", poll="0.3")
    with listener_kept_down("w-cut"):
        worker.wait_for("w-cut: LISTEN connection lost, falling back to polling every 0.3 s")
        job = queue_unannounced("polled")
        wait_for_pickup(job.pk, "found by a poll while the listener is down")
        wait_for_completion(job.pk)
    assert worker.proc.poll() is None, "a lost LISTEN connection must not stop the worker"

    def listening() -> bool:
        backends = listener_backends("w-cut")
        return len(backends) == 1 and backends[0][1].startswith("LISTEN")

    wait_until(listening, what="the worker to LISTEN again")
    worker.stop()


@postgresql_only
def test_listener_terminated__worker_listens_again_and_wakes_without_the_poll(
    make_job: MakeJob, processes: Processes
) -> None:
    worker = idle_worker(processes, "w-term")
    (first_pid, _), *others = listener_backends("w-term")
    assert not others, "one LISTEN connection per worker"
    assert terminate_listener("w-term") == 1
    worker.wait_for("w-term: LISTEN connection lost, falling back to polling every 60 s")
    worker.wait_for("w-term: listening for new jobs again")
    assert [pid for pid, _ in listener_backends("w-term")] != [first_pid]

    job = make_job()
    wait_for_pickup(job.pk, "woken by NOTIFY on the new connection: the poll is 60 s")
    wait_for_completion(job.pk)
    worker.stop()
    assert claimed_by(job.pk) == ["w-term"]


def test_sigterm__idle_worker_with_a_long_poll_exits_at_once(processes: Processes) -> None:
    worker = idle_worker(processes, "w-sigterm")
    worker.stop()  # within PICKUP_SECONDS, while its wait would last 60 s
    if on_postgresql:
        # It closed its LISTEN connection on the way out (the backend ends soon after).
        wait_until(lambda: not listener_backends("w-sigterm"), what="the LISTEN backend to end")


def test_polling__idle_worker_finds_a_job_nobody_announced(
    make_corpus: Corpus, processes: Processes
) -> None:
    make_corpus(5)
    worker = idle_worker(processes, "w-poll", poll="0.3")
    job = queue_unannounced("unannounced")
    wait_for_pickup(job.pk, "found by a poll every 0.3 s")
    wait_for_completion(job.pk)
    worker.stop()
    assert claimed_by(job.pk) == ["w-poll"]


@pytest.mark.skipif(
    on_postgresql,
    reason="PostgreSQL claims take row locks, not SQLite's database-wide write lock; "
    "the SQLite run of the suite covers it",
)
def test_polling__an_empty_poll_on_sqlite_takes_no_write_lock() -> None:
    # Another connection holds the write lock: a claim that opened its write transaction
    # would wait for it (20 s), then fail with "database is locked".
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert claim_next("w-reader", lease_seconds=30) is None
    finally:
        other.close()
