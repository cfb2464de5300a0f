"""Real jobs into the `pgvector` store: worker subprocesses, the hashing embedder, a real
PostgreSQL 16 with pgvector (tests/pgvector_server.py) that is restarted under a running job, a
worker SIGKILLed mid-job and resumed, and `reindex verify` and `SELECT count(*)` checking that
nothing was lost or written twice."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.utils import timezone
from psycopg.sql import SQL, Identifier

from reindexer.embedders.hashing import HashingEmbedder
from reindexer.jobs import cancel_job
from reindexer.models import EventKind, JobEvent, JobPhase, JobStatus, Phase, ReindexJob
from reindexer.stores.pgvector import PgvectorStore
from tests.integration.conftest import Processes, finish, wait_until
from tests.integration.store_jobs import collection, row, verify
from tests.pgvector_server import PgvectorServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.backends, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
FAST_LEASE = {"REINDEXER_LEASE_SECONDS": "1.5", "REINDEXER_HEARTBEAT_SECONDS": "0.3"}
MALFORMED = ['{"id": "", "text": "an empty id"}', "not json at all"]


@pytest.fixture(scope="module")
def own_server() -> Iterator[PgvectorServer]:
    """A server of this module's own, for the test that restarts it under a job."""
    with running_server() as server:
        yield server


def point_at(settings: Any, server: PgvectorServer, **extra: str) -> dict[str, str]:
    """Configure `pgvector` for this process (job creation) and return the worker's environment."""
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=server.url)
    return {"REINDEXER_PGVECTOR_URL": server.url, **extra}


def rows_in(server: PgvectorServer, table: str) -> int:
    with psycopg.connect(server.url) as conn:
        found = conn.execute(SQL("SELECT count(*) FROM {}").format(Identifier(table))).fetchone()
    return int(found[0]) if found else -1


def has_hnsw(server: PgvectorServer, table: str) -> bool:
    with psycopg.connect(server.url) as conn:
        found = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname = %s",
            (table, f"{table}_embedding_hnsw"),
        ).fetchone()
    return found is not None and "USING hnsw (embedding vector_cosine_ops)" in str(found[0])


def test_job__writes_into_pgvector_then_builds_the_index_as_a_phase_of_its_own(
    settings: Any,
    pgvector_server: PgvectorServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, pgvector_server)
    corpus = make_corpus(60, extra_lines=MALFORMED)
    name = collection()
    job = make_job(corpus, store="pgvector", collection=name, batch_size=10)
    code, _, err = finish(processes.worker("w-pgvector", env=env), timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (62, 62, 2)
    assert job.dimensions == 384
    report = verify(processes, job, env)
    assert (report["source_docs"], report["in_store"]) == (60, 60), report
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    assert rows_in(pgvector_server, name) == 60
    assert has_hnsw(pgvector_server, name)

    # Documents are written before they are searchable: the index build is its own phase.
    phases = {p.name: p for p in JobPhase.objects.filter(job=job)}
    assert list(phases) == [Phase.COUNTING, Phase.WRITING, Phase.INDEXING]
    assert all(p.finished_at is not None for p in phases.values()), phases
    writing, indexing = phases[Phase.WRITING], phases[Phase.INDEXING]
    assert writing.finished_at is not None and writing.finished_at <= indexing.started_at
    assert indexing.detail.startswith("index built in "), indexing.detail
    assert job.phase == Phase.INDEXING
    phase_events = list(
        JobEvent.objects.filter(job=job, kind=EventKind.PHASE).values_list("detail", flat=True)
    )
    assert phase_events[0] == "indexing started", phase_events
    assert phase_events[1].startswith("indexing done: index built in "), phase_events

    store = PgvectorStore(pgvector_server.url, name, 384)
    try:
        seventh = json.loads(corpus.read_text().splitlines()[7])
        [hit, *_] = store.search(HashingEmbedder(384).embed([seventh["text"]])[0], k=3)
        assert (hit.id, hit.text, hit.metadata) == ("doc-7", seventh["text"], {"n": 7})
    finally:
        store.close()


def test_job__sigkilled_worker_is_resumed_by_another_with_nothing_lost_or_doubled(
    settings: Any,
    pgvector_server: PgvectorServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, pgvector_server, **FAST_LEASE)
    name = collection()
    job = make_job(
        make_corpus(200, extra_lines=MALFORMED),
        store="flaky(pgvector,latency=30)",
        collection=name,
        batch_size=10,
    )
    first = processes.worker("w-pg-doomed", env=env)
    wait_until(lambda: row(job).processed_docs >= 50, timeout=60, what="50 documents written")
    os.kill(first.pid, signal.SIGKILL)
    assert finish(first)[0] == -signal.SIGKILL
    crashed = row(job)
    assert crashed.status == JobStatus.RUNNING and 0 < crashed.processed_docs < 202
    # The dead worker may have written a batch it never checkpointed: the resumed job writes
    # it again, and the primary key keeps one row per id.
    assert rows_in(pgvector_server, name) >= crashed.processed_docs - crashed.failed_docs

    lease = timedelta(seconds=float(FAST_LEASE["REINDEXER_LEASE_SECONDS"]))
    wait_until(
        lambda: row(job).heartbeat_at < timezone.now() - lease,  # type: ignore[operator]
        timeout=10,
        what="the dead worker's lease to expire",
    )
    code, _, err = finish(processes.worker("w-pg-rescuer", env=env), timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (202, 202, 2)
    assert job.worker == "w-pg-rescuer"
    report = verify(processes, job, env)
    assert (report["source_docs"], report["in_store"]) == (200, 200), report
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    assert rows_in(pgvector_server, name) == 200


def test_job__into_a_table_of_other_dimensions_fails_before_writing(
    settings: Any,
    pgvector_server: PgvectorServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, pgvector_server)
    name = collection()
    PgvectorStore(pgvector_server.url, name, 16).close()  # the table, made for 16 dimensions
    job = make_job(make_corpus(30), store="pgvector", collection=name, batch_size=10)
    code, _, err = finish(processes.worker("w-pg-dims", env=env), timeout=60)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.FAILED
    assert "16" in job.error and "384" in job.error, job.error
    assert "dimension" in job.error, job.error
    assert (job.processed_docs, job.batches_done) == (0, 0)
    assert rows_in(pgvector_server, name) == 0
    assert not JobPhase.objects.filter(job=job, name=Phase.WRITING).exists()


def test_job__rides_out_a_restart_of_the_pgvector_server(
    settings: Any,
    own_server: PgvectorServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    # Backoff of 0.4 s doubling over 8 retries outlasts the second or so a restart takes.
    env = point_at(settings, own_server, REINDEXER_RETRY_BACKOFF_SECONDS="0.4")
    name = collection()
    job = make_job(
        make_corpus(150),
        store="flaky(pgvector,latency=60)",
        collection=name,
        batch_size=10,
        max_retries=8,
    )
    worker = processes.worker("w-pg-restart", env=env)
    wait_until(lambda: row(job).processed_docs >= 30, timeout=60, what="30 documents written")
    own_server.restart()
    assert row(job).status == JobStatus.RUNNING, "the restart happened under the running job"
    code, _, err = finish(worker, timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.processed_docs, job.failed_docs, job.batches_failed) == (150, 0, 0)
    assert job.retries >= 1, "the upsert refused by the restart was retried and counted"
    assert "retried" in job.last_error, job.last_error
    report = verify(processes, job, env)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (150, 0, 0), report
    assert rows_in(own_server, name) == 150
    assert has_hnsw(own_server, name)


def test_job__waits_out_a_pgvector_server_that_is_down_when_it_starts(
    settings: Any,
    own_server: PgvectorServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, own_server, REINDEXER_RETRY_BACKOFF_SECONDS="0.4")
    name = collection()
    job = make_job(make_corpus(20), store="pgvector", collection=name, batch_size=10)
    own_server.stop()
    try:
        worker = processes.worker("w-pg-down", env=env)
        wait_until(
            lambda: "store open retried" in row(job).last_error,
            timeout=60,
            what="the worker retrying the store's open",
        )
    finally:
        own_server.start()
    code, _, err = finish(worker, timeout=120)
    assert code == 0, err
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.retries >= 1, "the refused opens were retried and counted"
    assert rows_in(own_server, name) == 20


def varied_corpus(path: Path, n: int) -> Path:
    """`n` documents of distinct random words: distinct vectors, so the HNSW build takes a
    while (make_corpus's texts repeat, and their index is built in about a second)."""
    rng = random.Random(9)
    vocabulary = [f"w{i}" for i in range(5000)]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choices(vocabulary, k=12))
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return path


def test_job__cancelled_while_indexing_leaves_no_index_and_ends_cancelled(
    settings: Any,
    pgvector_server: PgvectorServer,
    data_dir: Path,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, pgvector_server)
    name = collection()
    corpus = varied_corpus(data_dir / "varied.jsonl", 10_000)
    job = make_job(corpus, store="pgvector", collection=name, batch_size=1000)
    worker = processes.worker("w-pg-cancel", env=env)
    wait_until(lambda: row(job).phase == Phase.INDEXING, timeout=60, interval=0.1, what="indexing")
    cancel_job(row(job))
    code, _, err = finish(worker, timeout=60)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.CANCELLED, (job.status, job.error)
    assert job.processed_docs == 10_000
    assert rows_in(pgvector_server, name) == 10_000
    assert not has_hnsw(pgvector_server, name), "the abandoned build left no index behind"
    assert JobPhase.objects.filter(job=job, name=Phase.INDEXING).exists()
