"""Incremental runs, --cleanup full, manual Swap/Discard and a failed cutover gate on the server
stores (pgvector, Milvus), run by the in-process burst worker: the same outcomes the sqlite-vec
tests (test_incremental.py, test_cleanup.py, test_swap_jobs.py) pin, read back from the store."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import JobStatus, ReindexJob
from reindexer.stores import store_backend
from tests.integration.test_cleanup import cleaned_up
from tests.integration.test_incremental import doc, finished, hashed_ids, write_corpus
from tests.integration.test_swap_jobs import DIMS, cli, kinds, reader_ids, swap_job
from tests.unit.test_store_aliases import configure

pytestmark = [pytest.mark.backends, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Run = Callable[..., None]
SPECS = ["pgvector", "milvus"]
N = 60


@pytest.fixture(params=SPECS)
def spec(request: pytest.FixtureRequest, settings: Any) -> str:
    """The server store under test, pointed at its session server."""
    configure(settings, request.param, request)
    return str(request.param)


def unique(kind: str) -> str:
    """A name no other test takes: the servers' stores are shared by the whole session."""
    return f"bf_{kind}_{uuid.uuid4().hex[:10]}"


def stored_texts(spec: str, collection: str) -> dict[str, str]:
    """Every document the store holds in `collection`: {id: text}."""
    store = store_backend(spec).open(collection, DIMS)
    try:
        return {d.id: d.text for d in store.documents(None, 10_000)}
    finally:
        store.close()


def nearest(spec: str, collection: str, text: str) -> tuple[str, str]:
    """The id and stored text of the nearest hit for `text`."""
    store = store_backend(spec).open(collection, DIMS)
    try:
        [hit, *_] = store.search(HashingEmbedder(DIMS).embed([text])[0], k=3)
        return hit.id, hit.text
    finally:
        store.close()


def test_incremental__skips_unchanged_and_writes_exactly_the_changed(
    spec: str, data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    name = unique("inc")
    docs = [doc(i, n=i) for i in range(N)]
    source = write_corpus(data_dir, docs)
    first = make_job(source, store=spec, collection=name, batch_size=25)
    run_burst_worker()
    first = finished(first)
    assert (first.processed_docs, first.skipped_docs, first.written_docs) == (N, 0, N)
    assert hashed_ids(name, spec) == {d["id"] for d in docs}

    rerun = make_job(source, store=spec, collection=name, batch_size=25, mode="incremental")
    run_burst_worker()
    rerun = finished(rerun)
    assert (rerun.processed_docs, rerun.skipped_docs, rerun.failed_docs) == (N, N, 0)
    assert rerun.written_docs == 0
    assert len(stored_texts(spec, name)) == N

    # 3 texts and 1 metadata changed, 2 added: exactly those 6 are written.
    for i in (3, 25, 44):
        docs[i] = doc(i, f"a changed text for {i}", n=i)
    docs[30] = doc(30, n=30, tag="new")
    docs += [doc(500, n=500), doc(501, n=501)]
    write_corpus(data_dir, docs)
    changed = make_job(source, store=spec, collection=name, batch_size=25, mode="incremental")
    run_burst_worker()
    changed = finished(changed)
    assert (changed.processed_docs, changed.skipped_docs, changed.written_docs) == (
        N + 2,
        N - 4,
        6,
    )
    texts = stored_texts(spec, name)
    assert texts == {d["id"]: d["text"] for d in docs}
    assert texts["doc-25"] == "a changed text for 25"
    assert nearest(spec, name, "a changed text for 44") == ("doc-44", "a changed text for 44")
    assert hashed_ids(name, spec) == {d["id"] for d in docs}


GONE = {"doc-3", "doc-17", "doc-30", "doc-49"}


@pytest.fixture
def shrunk_source(
    spec: str, data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> tuple[Path, str]:
    """50 documents written into a fresh collection; then 4 of them leave the source."""
    name = unique("clean")
    source = write_corpus(data_dir, [doc(i) for i in range(50)])
    job = make_job(source, store=spec, collection=name, batch_size=10)
    run_burst_worker()
    assert finished(job).written_docs == 50
    assert len(stored_texts(spec, name)) == 50
    write_corpus(data_dir, [doc(i) for i in range(50) if f"doc-{i}" not in GONE])
    return source, name


def test_cleanup_full__deletes_what_left_the_source(
    spec: str, shrunk_source: tuple[Path, str], make_job: MakeJob, run_burst_worker: Run
) -> None:
    source, name = shrunk_source
    job = make_job(source, store=spec, collection=name, batch_size=10, cleanup="full")
    run_burst_worker()
    job = finished(job)
    everything = {f"doc-{i}" for i in range(50)}
    assert set(stored_texts(spec, name)) == everything - GONE
    assert hashed_ids(name, spec) == everything - GONE
    assert cleaned_up(job) == ["deleted 4 documents that left the source"]


def test_cleanup_full__a_failed_job_deletes_nothing(
    spec: str, shrunk_source: tuple[Path, str], make_job: MakeJob, run_burst_worker: Run
) -> None:
    source, name = shrunk_source
    job = make_job(
        source,
        store=f"flaky({spec},poison=doc-5)",
        collection=name,
        batch_size=10,
        cleanup="full",
        max_failed_ratio=0.0,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == (
        "error budget exceeded: 1 of 46 documents failed, more than max_failed_ratio=0"
    )
    everything = {f"doc-{i}" for i in range(50)}
    assert set(stored_texts(spec, name)) == everything
    assert hashed_ids(name, spec) == everything
    assert cleaned_up(job) == []


def run_swap(
    make_job: MakeJob, data_dir: Path, run: Run, prefix: str, n: int, **fields: Any
) -> ReindexJob:
    job = swap_job(make_job, data_dir, prefix, n, **fields)
    run()
    job.refresh_from_db()
    return job


def test_manual_swap__awaits_then_approve_moves_the_alias_and_discard_drops_the_other(
    spec: str, data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    alias = unique("man")
    backend = store_backend(spec)
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 40, store=spec, collection=alias)
    assert first.status == JobStatus.COMPLETED, first.error
    waiting = run_swap(
        make_job, data_dir, run_burst_worker, "new", 40,
        store=spec, collection=alias, approve="manual",
    )  # fmt: skip
    other = run_swap(
        make_job, data_dir, run_burst_worker, "new", 41,
        store=spec, collection=alias, approve="manual",
    )  # fmt: skip
    for job in (waiting, other):
        assert job.status == JobStatus.AWAITING_APPROVAL, job.error
        assert job.verification["passed"] is True
    assert backend.alias_target(alias) == f"{alias}__{first.pk}"
    assert reader_ids(spec, alias) == (40, {"old"})  # readers still see the first

    assert cli("approve", str(waiting.pk)) == (
        f"job {waiting.pk}: alias {alias} now serves {alias}__{waiting.pk}"
        f" (was {alias}__{first.pk})\n"
    )
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.COMPLETED
    assert backend.alias_target(alias) == f"{alias}__{waiting.pk}"
    assert reader_ids(spec, alias) == (40, {"new"})

    assert cli("discard", str(other.pk)) == (
        f"job {other.pk}: discarded; alias {alias} left as it was\n"
    )
    other.refresh_from_db()
    assert other.status == JobStatus.CANCELLED
    assert kinds(other)[-2:] == ["cancelled", "discarded"]
    assert not backend.exists(f"{alias}__{other.pk}")
    assert backend.physical_collections(alias) == [f"{alias}__{first.pk}", f"{alias}__{waiting.pk}"]
    assert backend.alias_target(alias) == f"{alias}__{waiting.pk}"
    assert reader_ids(spec, alias) == (40, {"new"})


def test_cutover_gate__a_count_outside_the_budget_fails_and_drops_the_collection(
    spec: str, data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    alias = unique("gate")
    backend = store_backend(spec)
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 60, store=spec, collection=alias)
    assert first.status == JobStatus.COMPLETED, first.error
    shrunk = run_swap(make_job, data_dir, run_burst_worker, "new", 30, store=spec, collection=alias)

    assert shrunk.status == JobStatus.FAILED
    assert shrunk.error == (
        f"cutover gate failed: {alias}__{shrunk.pk} holds 30 documents against 60 in"
        f" {alias}__{first.pk}: 30 apart, more than the error budget of 6"
    )
    assert shrunk.verification["passed"] is False
    assert kinds(shrunk)[-2:] == ["failed", "discarded"]
    assert not backend.exists(f"{alias}__{shrunk.pk}")
    assert backend.physical_collections(alias) == [f"{alias}__{first.pk}"]
    assert backend.alias_target(alias) == f"{alias}__{first.pk}"
    assert reader_ids(spec, alias) == (60, {"old"})
