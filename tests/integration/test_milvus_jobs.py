"""Real jobs into the `milvus` store: a worker subprocess, the hashing embedder, a real milvus-lite
server on 127.0.0.1 (tests/milvus_server.py), restarted under the running job, and
`reindex verify` checking that nothing was lost or written twice."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import JobStatus, ReindexJob
from reindexer.stores.milvus import MilvusBackend
from tests.integration.conftest import Processes, finish, wait_until
from tests.integration.store_jobs import collection, row, verify
from tests.milvus_server import MilvusServer

pytestmark = [pytest.mark.slow, pytest.mark.backends, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


def point_at(settings: Any, server: MilvusServer, **extra: str) -> dict[str, str]:
    """Configure `milvus` for this process (job creation) and return the worker's environment."""
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=server.url)
    return {"REINDEXER_MILVUS_URI": server.url, **extra}


def test_job__writes_every_document_into_milvus_and_verify_finds_them_all(
    settings: Any,
    milvus_server: MilvusServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = point_at(settings, milvus_server)
    corpus = make_corpus(60)
    name = collection()
    job = make_job(corpus, store="milvus", collection=name, batch_size=10)
    code, _, err = finish(processes.worker("w-milvus", env=env), timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.processed_docs, job.failed_docs) == (60, 0)
    assert job.dimensions == 384
    report = verify(processes, job, env)
    assert (report["source_docs"], report["in_store"]) == (60, 60), report
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    store = MilvusBackend().open(name, 384)
    try:
        seventh = json.loads(corpus.read_text().splitlines()[7])
        [hit, *_] = store.search(HashingEmbedder(384).embed([seventh["text"]])[0], k=3)
        assert (hit.id, hit.text, hit.metadata) == ("doc-7", seventh["text"], {"n": 7})
    finally:
        store.close()


def test_job__rides_out_a_restart_of_the_milvus_server_and_loses_nothing(
    settings: Any,
    milvus_server: MilvusServer,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    # Backoff of 0.4 s doubling over 8 retries outlasts the ~1 s a restart takes.
    env = point_at(settings, milvus_server, REINDEXER_RETRY_BACKOFF_SECONDS="0.4")
    name = collection()
    job = make_job(
        make_corpus(200),
        store="flaky(milvus,latency=120)",
        collection=name,
        batch_size=10,
        max_retries=8,
    )
    worker = processes.worker("w-milvus-restart", env=env)
    wait_until(lambda: row(job).processed_docs >= 40, timeout=60, what="40 documents written")
    milvus_server.restart()
    assert row(job).status == JobStatus.RUNNING, "the restart happened under the running job"
    code, _, err = finish(worker, timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.processed_docs, job.failed_docs) == (200, 0)
    assert job.retries >= 1, "the upserts refused during the restart were retried and counted"
    assert "unreachable" in job.last_error, job.last_error
    report = verify(processes, job, env)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (200, 0, 0), report
