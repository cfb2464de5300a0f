"""--mode incremental on real sqlite-vec stores: content hashes recorded in the batch commit,
unchanged documents skipped (not embedded, not written), changed ones re-embedded; a poison
document and a crash between a store write and its commit leave no hash, so the next run writes
them again; slices skip and record alike."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from reindexer.backends import NoOptions
from reindexer.content_hashes import store_identity
from reindexer.embedders import EMBEDDERS, Vectors
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import ContentHash, JobStatus, ReindexJob
from reindexer.signals import batch_committed
from reindexer.stores import open_store
from reindexer.verify import verify_job
from tests.integration import crash_store
from tests.integration.conftest import WAIT_SECONDS, event_kinds, finish, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Run = Callable[..., None]
REPO_ROOT = Path(__file__).resolve().parents[2]

# The texts the `counting` embedder (hashing's vectors) was asked to embed, in this process.
EMBEDDED: list[str] = []


class CountingEmbedder(HashingEmbedder):
    def embed(self, texts: Sequence[str]) -> Vectors:
        EMBEDDED.extend(texts)
        return super().embed(texts)


@pytest.fixture(autouse=True, scope="module")
def registered() -> Iterator[None]:
    EMBEDDERS.register("counting", NoOptions, lambda _: CountingEmbedder())
    crash_store.register()
    try:
        yield
    finally:
        EMBEDDERS.unregister("counting")
        crash_store.unregister()


@pytest.fixture(autouse=True)
def embedded() -> list[str]:
    EMBEDDED.clear()
    return EMBEDDED


def doc(i: int, text: str | None = None, **metadata: Any) -> dict[str, Any]:
    return {"id": f"doc-{i}", "text": text or f"document number {i}", "metadata": metadata}


def write_corpus(data_dir: Path, docs: list[dict[str, Any]], name: str = "docs.jsonl") -> Path:
    path = data_dir / name
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def finished(job: ReindexJob) -> ReindexJob:
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def hashed_ids(collection: str, store: str = "sqlite-vec") -> set[str]:
    return set(
        ContentHash.objects.filter(store=store, collection=collection).values_list(
            "doc_id", flat=True
        )
    )


def stored_ids(collection: str) -> set[str]:
    store = open_store("sqlite-vec", collection, 384)
    try:
        return set(store.ids())
    finally:
        store.close()


def clean_verify(job: ReindexJob) -> None:
    report = verify_job(job)
    assert (report["missing"], report["duplicates"]) == (0, 0), report


def test_incremental__skips_unchanged_and_re_embeds_exactly_the_changed(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run, embedded: list[str]
) -> None:
    docs = [doc(i, n=i) for i in range(120)]
    source = write_corpus(data_dir, docs)
    first = make_job(source, embedder="counting", batch_size=25)
    run_burst_worker()
    first = finished(first)
    assert (first.skipped_docs, first.written_docs) == (0, 120)
    assert len(embedded) == 120
    assert hashed_ids(first.collection) == {d["id"] for d in docs}

    embedded.clear()
    rerun = make_job(source, embedder="counting", batch_size=25, mode="incremental")
    committed: list[int] = []

    def note(sender: object, skipped: int, **kwargs: Any) -> None:
        committed.append(skipped)

    batch_committed.connect(note)
    try:
        run_burst_worker()
    finally:
        batch_committed.disconnect(note)
    rerun = finished(rerun)
    assert (rerun.processed_docs, rerun.skipped_docs, rerun.failed_docs) == (120, 120, 0)
    assert rerun.written_docs == 0 and embedded == []
    assert committed == [25, 25, 25, 25, 20]  # the signal carries the real number
    assert rerun.checkpoint == first.checkpoint  # moved past the skipped documents

    # 3 texts and 1 metadata changed, 2 added: exactly those 6 are embedded and written.
    for i in (3, 50, 99):
        docs[i] = doc(i, f"a changed text for {i}", n=i)
    docs[70] = doc(70, n=70, tag="new")
    docs += [doc(500, n=500), doc(501, n=501)]
    write_corpus(data_dir, docs)
    changed = make_job(source, embedder="counting", batch_size=25, mode="incremental")
    run_burst_worker()
    changed = finished(changed)
    assert (changed.processed_docs, changed.skipped_docs, changed.written_docs) == (122, 116, 6)
    assert sorted(embedded) == sorted(
        [d["text"] for d in docs if d["id"] in {"doc-3", "doc-50", "doc-99", "doc-70"}]
        + ["document number 500", "document number 501"]
    )
    assert stored_ids(changed.collection) == {d["id"] for d in docs}
    clean_verify(changed)

    # Another embedder (identity in the hash): everything is re-embedded.
    other = make_job(source, embedder="hashing", batch_size=25, mode="incremental")
    run_burst_worker()
    other = finished(other)
    assert (other.skipped_docs, other.written_docs) == (0, 122)
    clean_verify(other)


def test_hashes__are_recorded_in_full_mode_and_shared_by_flaky_wrapped_runs(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    assert store_identity("flaky(sqlite-vec,transient=0.2,seed=3)") == "sqlite-vec"
    source = write_corpus(data_dir, [doc(i) for i in range(60)])
    first = make_job(
        source, batch_size=10, store="flaky(sqlite-vec,transient=0.2,seed=3)", max_retries=10
    )
    run_burst_worker()
    first = finished(first)
    assert first.retries > 0  # retried writes, every document recorded once written
    assert hashed_ids(first.collection) == {f"doc-{i}" for i in range(60)}
    rerun = make_job(source, batch_size=10, mode="incremental")
    run_burst_worker()
    assert (finished(rerun).skipped_docs, rerun.written_docs) == (60, 0)


def test_poison__a_document_that_failed_gets_no_hash_and_the_next_run_writes_it(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(40)])
    poisoned = make_job(
        source, batch_size=10, store="flaky(sqlite-vec,poison=doc-17)", max_failed_ratio=0.5
    )
    run_burst_worker()
    poisoned = finished(poisoned)
    assert poisoned.failed_docs == 1
    assert hashed_ids(poisoned.collection) == {f"doc-{i}" for i in range(40)} - {"doc-17"}

    healed = make_job(source, batch_size=10, mode="incremental")
    run_burst_worker()
    healed = finished(healed)
    assert (healed.skipped_docs, healed.written_docs, healed.failed_docs) == (39, 1, 0)
    assert "doc-17" in stored_ids(healed.collection)
    assert hashed_ids(healed.collection) == {f"doc-{i}" for i in range(40)}


def test_crash__between_the_store_write_and_its_commit_leaves_no_hash_and_the_next_run_writes_it(
    data_dir: Path,
    make_job: MakeJob,
    run_burst_worker: Run,
    worker_env: dict[str, str],
    settings: Any,
) -> None:
    source = write_corpus(data_dir, [doc(i) for i in range(100)])
    spec = f"{crash_store.NAME}(sqlite-vec,doc-35,crashed)"
    job = make_job(source, batch_size=10, store=spec)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_store", "reindex_worker", "--burst"],
        cwd=REPO_ROOT,
        env={**worker_env, "REINDEXER_PIPELINE": "off"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    code, _, err = finish(proc, timeout=WAIT_SECONDS)
    assert code == -signal.SIGKILL, err
    crashed = ReindexJob.objects.get(pk=job.pk)
    assert crashed.status == JobStatus.RUNNING and crashed.processed_docs == 30
    batch = {f"doc-{i}" for i in range(30, 40)}
    # The store holds the batch it wrote; its commit, hashes included, never happened.
    assert batch <= stored_ids(job.collection)
    assert hashed_ids(job.collection) == {f"doc-{i}" for i in range(30)}

    # The dead worker's job, asked to cancel, is swept once its lease lapses; the next run,
    # incremental, skips what was committed and writes that batch again.
    crashed.request_cancel("test")
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, lease_seconds=1.0)
    wait_until(
        lambda: ReindexJob.objects.stale(1.0).filter(pk=job.pk).exists(),
        timeout=10,
        what="the crashed job's lease to lapse",
    )
    rerun = make_job(source, batch_size=10, mode="incremental")
    run_burst_worker()
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    rerun = finished(rerun)
    assert (rerun.skipped_docs, rerun.written_docs) == (30, 70)
    assert hashed_ids(rerun.collection) == {f"doc-{i}" for i in range(100)}
    clean_verify(rerun)
    assert "completed" in event_kinds(rerun)
    assert os.path.exists(data_dir / "crashed")


def test_sliced_incremental__each_slice_skips_and_the_counts_sum_into_the_job(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    docs = [doc(i) for i in range(90)]
    source = write_corpus(data_dir, docs)
    first = make_job(source, batch_size=10, slices=3)
    run_burst_worker()
    assert finished(first).written_docs == 90
    docs[5] = doc(5, "changed five")
    docs[80] = doc(80, "changed eighty")
    write_corpus(data_dir, docs)
    rerun = make_job(source, batch_size=10, slices=3, mode="incremental")
    run_burst_worker()
    rerun = finished(rerun)
    slices = list(ReindexJob.objects.filter(parent=rerun))
    assert len(slices) == 3
    assert (rerun.processed_docs, rerun.skipped_docs, rerun.written_docs) == (90, 88, 2)
    assert sum(s.skipped_docs for s in slices) == 88
    clean_verify(rerun)
