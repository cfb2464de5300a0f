"""A real `reindex_worker` subprocess serving its own metrics on REINDEXER_METRICS_PORT."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reindexer.models import JobStatus, ReindexJob
from tests.integration.conftest import Processes, finish, wait_for_output, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
        body = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def written(samples: Samples) -> float:
    return samples[("reindexer_docs_total", (("outcome", "written"),))]


def test_worker_port__counts_the_batches_and_documents_of_the_job_it_ran(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # Two poisoned documents: the failed outcome is counted apart from the written one.
    store = "flaky(sqlite-vec,poison=doc-17,poison=doc-230)"
    job = make_job(make_corpus(450), batch_size=40, store=store)
    port = free_port()
    worker = processes.worker("w-metrics", burst=False, env={"REINDEXER_METRICS_PORT": str(port)})
    wait_until(
        lambda: ReindexJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        what=f"job {job.pk} to complete",
    )
    job.refresh_from_db()

    samples = scrape(port)

    assert (job.processed_docs, job.failed_docs, job.batches_done) == (450, 2, 12)
    assert samples[("reindexer_batch_seconds_count", ())] == job.batches_done
    assert samples[("reindexer_batch_seconds_bucket", (("le", "+Inf"),))] == job.batches_done
    assert samples[("reindexer_batch_seconds_sum", ())] > 0
    assert written(samples) == job.written_docs == 448
    assert samples[("reindexer_docs_total", (("outcome", "failed"),))] == job.failed_docs
    assert samples[("reindexer_docs_total", (("outcome", "skipped"),))] == 0
    assert samples[("reindexer_retries_total", ())] == job.retries
    # The gauges, read from the job database in the server's thread.
    assert samples[("reindexer_jobs", (("status", "completed"),))] == 1
    assert samples[("reindexer_queue_depth", ())] == 0
    assert not any(name == "reindexer_heartbeat_age_seconds" for name, _ in samples)

    # The next job adds to the same counters; every scrape still reads the database.
    second = make_job(make_corpus(30, name="more.jsonl"), batch_size=10, collection="more")
    wait_until(
        lambda: ReindexJob.objects.get(pk=second.pk).status == JobStatus.COMPLETED,
        what=f"job {second.pk} to complete",
    )
    samples = scrape(port)
    assert samples[("reindexer_batch_seconds_count", ())] == job.batches_done + 3
    assert written(samples) == 448 + 30
    assert samples[("reindexer_jobs", (("status", "completed"),))] == 2

    worker.send_signal(signal.SIGTERM)
    code, _, err = finish(worker)
    assert code == 0, err


def test_worker_port__in_use_the_worker_exits_1_with_one_line(
    make_job: MakeJob, processes: Processes
) -> None:
    job = make_job()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = processes.worker("w-port-taken", env={"REINDEXER_METRICS_PORT": str(port)})
        code, out, err = finish(worker)

    assert code == 1
    lines = err.strip().splitlines()
    assert lines == [
        f"CommandError: cannot serve metrics on 127.0.0.1:{port} (REINDEXER_METRICS_PORT): "
        "already in use"
    ], err
    # It stopped before claiming anything.
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_worker_port__serves_while_the_worker_idles(processes: Processes) -> None:
    port = free_port()
    worker = processes.worker("w-idle", burst=False, env={"REINDEXER_METRICS_PORT": str(port)})
    wait_for_output(worker, "idle, waiting for a job")

    samples = scrape(port)

    assert samples[("reindexer_batch_seconds_count", ())] == 0
    assert samples[("reindexer_queue_depth", ())] == 0
    worker.send_signal(signal.SIGTERM)
    assert finish(worker)[0] == 0


def test_worker_port__serves_its_own_metrics_while_the_job_database_is_down(
    processes: Processes,
) -> None:
    port, nowhere = free_port(), free_port()  # nothing listens on the database's port
    worker = processes.worker(
        "w-no-database",
        burst=False,
        env={
            "REINDEXER_METRICS_PORT": str(port),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{nowhere}/reindexer",
        },
    )
    wait_for_output(worker, "cannot claim, job database unavailable")

    samples = scrape(port)

    assert samples[("reindexer_batch_seconds_count", ())] == 0
    assert written(samples) == 0
    # The gauges need the database: left out of the scrape rather than failing it.
    assert not any(name in {"reindexer_jobs", "reindexer_queue_depth"} for name, _ in samples)
    worker.send_signal(signal.SIGTERM)
    assert finish(worker)[0] == 0
