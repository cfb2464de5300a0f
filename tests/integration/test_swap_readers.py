"""Readers through an alias during a whole swap job and during a rollback, on every store.

Two reader threads query the alias in a loop, a search (k=5 of a fixed text) and a count each
time: one keeps a store opened on the alias (a search service), the other opens it afresh for
every query (as `reindex search` does). The old and new corpora are told apart by their ids'
prefix (`old-`, `new-`) and their sizes. No query may fail, none may be empty, none mixed.

The job waits at every batch commit until each reader has made a few more queries, so the
readers query throughout the job, whatever the machine's speed; the rollback is surrounded by
queries the same way.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from reindexer.embedders.hashing import HashingEmbedder
from reindexer.models import JobStatus, ReindexJob
from reindexer.signals import batch_committed
from reindexer.stores import StoreBackend, VectorStore, store_backend
from reindexer.swaps.actions import rollback
from tests.integration.conftest import wait_until
from tests.integration.test_swap_jobs import DIMS, swap_job
from tests.unit.test_store_aliases import configure

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
OLD_DOCS, NEW_DOCS = 150, 140
BATCH = 15  # 10 batches for the new corpus
QUERIES_PER_BATCH = 3
QUERIES_AROUND = 20  # each reader, before and after a move
READER_DEADLINE_SECONDS = 120.0

SPECS = [
    pytest.param("sqlite-vec", id="sqlite-vec"),
    pytest.param("pgvector", id="pgvector", marks=pytest.mark.backends),
    pytest.param("milvus", id="milvus", marks=pytest.mark.backends),
]


@dataclasses.dataclass
class Reader:
    """One reader's tally: queries by what they saw, and the first few problems in full."""

    name: str
    seen: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[str] = dataclasses.field(default_factory=list)
    made: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def note(self, what: str, problem: str = "") -> None:
        with self.lock:
            self.made += 1
            self.seen[what] += 1
            if problem and len(self.problems) < 10:
                self.problems.append(problem)


def judge(store: VectorStore, vector: Any, reader: Reader) -> None:
    hits = store.search(vector, k=5)
    count = store.count()
    prefixes = {hit.id.split("-", 1)[0] for hit in hits}
    expected = {"old": OLD_DOCS, "new": NEW_DOCS}
    if not hits:
        reader.note("empty", f"no hits (count {count})")
    elif len(hits) != 5 or len(prefixes) != 1 or prefixes - expected.keys():
        reader.note("mixed", f"{len(hits)} hits from {sorted(prefixes)}")
    elif count not in expected.values():
        reader.note("bad count", f"count {count}")
    else:
        reader.note(prefixes.pop())


def read_loop(
    backend: StoreBackend, alias: str, keep_open: bool, reader: Reader, stop: threading.Event
) -> None:
    vector = HashingEmbedder(DIMS).embed(["w8 w9 w10 fixed query"])[0]
    kept = backend.open(alias, DIMS) if keep_open else None
    try:
        while not stop.is_set():
            try:
                store = kept or backend.open(alias, DIMS)
                try:
                    judge(store, vector, reader)
                finally:
                    if kept is None:
                        store.close()
            except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                reader.note("failed", f"{type(exc).__name__}: {exc}")
    finally:
        if kept is not None:
            kept.close()


def queried(readers: list[Reader], more: int) -> Callable[[], None]:
    """Wait (in the caller's thread) until every reader has made `more` further queries."""

    def wait() -> None:
        marks = [(r, r.made + more) for r in readers]
        wait_until(
            lambda: all(r.made >= mark for r, mark in marks),
            timeout=READER_DEADLINE_SECONDS,
            what=f"{more} more queries from each reader",
        )

    return wait


@pytest.mark.parametrize("spec", SPECS)
def test_readers__never_fail_nor_see_an_empty_or_mixed_result_during_a_swap_and_a_rollback(
    spec: str,
    make_job: MakeJob,
    data_dir: Path,
    settings: Any,
    request: pytest.FixtureRequest,
) -> None:
    configure(settings, spec, request)
    backend = store_backend(spec)
    alias = f"sr_{uuid.uuid4().hex[:10]}"
    first = swap_job(make_job, data_dir, "old", OLD_DOCS, store=spec, collection=alias)
    call_command("reindex_worker", "--burst", "--worker-id", "w-readers")
    first.refresh_from_db()
    assert first.status == JobStatus.COMPLETED, first.error

    readers = [Reader("kept"), Reader("fresh")]
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=read_loop, args=(backend, alias, r.name == "kept", r, stop), daemon=True
        )
        for r in readers
    ]
    for thread in threads:
        thread.start()
    around = queried(readers, QUERIES_AROUND)
    per_batch = queried(readers, QUERIES_PER_BATCH)

    def readers_query_meanwhile(sender: object, **_: Any) -> None:
        per_batch()

    try:
        around()
        second = swap_job(
            make_job, data_dir, "new", NEW_DOCS, store=spec, collection=alias, batch_size=BATCH
        )
        during_job = [r.made for r in readers]
        batch_committed.connect(readers_query_meanwhile, weak=False)
        try:
            call_command("reindex_worker", "--burst", "--worker-id", "w-readers")
        finally:
            batch_committed.disconnect(readers_query_meanwhile)
        during_job = [r.made - before for r, before in zip(readers, during_job, strict=True)]
        around()
        before_rollback = {r.name: (r.seen["new"], r.seen["old"]) for r in readers}
        rollback(spec, alias)
        around()
    finally:
        stop.set()
        for thread in threads:
            thread.join(READER_DEADLINE_SECONDS)

    second.refresh_from_db()
    assert second.status == JobStatus.COMPLETED, second.error
    assert backend.alias_target(alias) == f"{alias}__{first.pk}"
    for reader in readers:
        bad = {k: reader.seen[k] for k in ("failed", "empty", "mixed", "bad count")}
        assert bad == dict.fromkeys(bad, 0), (reader.name, reader.problems)
        # Queried through the whole job (10 batches × 3), the swap and the rollback.
        assert reader.made >= 3 * QUERIES_AROUND + 10 * QUERIES_PER_BATCH, reader
        new_seen, old_seen = before_rollback[reader.name]
        assert new_seen > 0, reader  # the new collection, once swapped
        assert reader.seen["old"] > old_seen, reader  # the old one again, once rolled back
    assert all(n >= 10 * QUERIES_PER_BATCH for n in during_job), during_job
