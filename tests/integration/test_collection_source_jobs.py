"""The everyday migration as real jobs: `reindex start --source collection:STORE/docs
--collection docs_new` re-embeds an existing collection into a new one, run by a worker
subprocess, on sqlite-vec (through the command line, sliced too) and once each on pgvector and
Milvus; `reindex verify` then reports 0 missing and 0 duplicates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from reindexer.documents import Document
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import JobStatus, ReindexJob
from reindexer.stores import store_backend
from tests.integration.conftest import Processes, finish
from tests.integration.store_jobs import collection, row, verify

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
DOCS = 240
DIMS = 384  # the hashing embedder's


def _words(i: int) -> str:
    """Words of document `i`'s own, so that its vector stands out from its neighbours'."""
    return " ".join(f"w{i * 8 + k}" for k in range(8))


def fill(store: str, name: str, n: int = DOCS) -> list[Document]:
    """An existing collection, as a previous model's job left it (vectors of the hashing
    embedder at another width would do as well: the source reads only id, text, metadata)."""
    docs = [Document(f"doc-{i:05d}", f"stored {_words(i)} — ünïcode", {"n": i}) for i in range(n)]
    opened = store_backend(store).open(name, DIMS)
    try:
        opened.upsert(docs, HashingEmbedder(DIMS).embed([d.text for d in docs]))
    finally:
        opened.close()
    return docs


def settings_for(settings: Any, store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if store == "pgvector":
        server = request.getfixturevalue("pgvector_server")
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=server.url)
        return {"REINDEXER_PGVECTOR_URL": server.url}
    if store == "milvus":
        server = request.getfixturevalue("milvus_server")
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=server.url)
        return {"REINDEXER_MILVUS_URI": server.url}
    return {}


def check_copy(store: str, name: str, docs: list[Document]) -> None:
    opened = store_backend(store).open(name, DIMS)
    try:
        assert opened.count() == len(docs)
        [copied] = opened.documents(docs[16].id, 1)
        assert (copied.id, copied.text, copied.metadata) == (docs[17].id, docs[17].text, {"n": 17})
        # Re-embedded: the copy's vector is its text's (Milvus's index is approximate: top 10).
        hits = opened.search(HashingEmbedder(DIMS).embed([docs[17].text])[0], k=10)
        assert docs[17].id in [hit.id for hit in hits]
    finally:
        opened.close()


def test_start__re_embeds_a_sqlite_vec_collection_into_a_new_one_in_one_command(
    processes: Processes,
) -> None:
    docs = fill("sqlite-vec", "docs")
    started = processes.run(
        "reindex", "start", "--source", "collection:sqlite-vec/docs",
        "--embedder", "hashing", "--collection", "docs_minilm", "--batch-size", "50",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    job = ReindexJob.objects.get(pk=int(started.stdout.strip().splitlines()[-1]))
    code, _, err = finish(processes.worker("w-collection"), timeout=120)
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (DOCS, DOCS, 0)
    report = verify(processes, job, {})
    assert (report["source_docs"], report["in_store"]) == (DOCS, DOCS), report
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    check_copy("sqlite-vec", "docs_minilm", docs)


def test_start__a_sliced_copy_of_an_alias_reads_what_it_serves(
    make_job: MakeJob, processes: Processes
) -> None:
    fill("sqlite-vec", "docs__1")
    store_backend("sqlite-vec").point_alias("docs", "docs__1")
    job = make_job("collection:sqlite-vec/docs", collection="docs_copy", slices=3, batch_size=40)
    workers = [processes.worker(f"w-{i}") for i in range(2)]
    for worker in workers:
        code, _, err = finish(worker, timeout=120)
        assert code == 0, err
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (DOCS, DOCS, 0)
    report = verify(processes, job, {})
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report


def test_start__refuses_a_collection_that_is_not_there(processes: Processes) -> None:
    started = processes.run(
        "reindex", "start", "--source", "collection:sqlite-vec/ghost", "--collection", "x"
    )
    assert started.returncode == 1
    assert "collection 'ghost' not found in sqlite-vec" in started.stderr, started.stderr


@pytest.mark.backends
@pytest.mark.parametrize("store", ["pgvector", "milvus"])
def test_job__copies_a_server_collection_into_a_new_one(
    store: str,
    settings: Any,
    request: pytest.FixtureRequest,
    make_job: MakeJob,
    processes: Processes,
) -> None:
    env = settings_for(settings, store, request)
    source, target = collection(), collection()
    docs = fill(store, source)
    job = make_job(f"collection:{store}/{source}", store=store, collection=target, batch_size=60)
    code, _, err = finish(processes.worker(f"w-{store}", env=env), timeout=180)
    assert code == 0, err
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (DOCS, DOCS, 0)
    report = verify(processes, job, env)
    assert (report["source_docs"], report["in_store"]) == (DOCS, DOCS), report
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    check_copy(store, target, docs)
