"""BatchWriter over the real hashing embedder and a real sqlite-vec store behind `flaky(...)`."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest

from reindexer.batching import (
    BatchWriter,
    FailureRecord,
    RetryPolicy,
    StoreFailed,
    StoreUnreachable,
)
from reindexer.documents import Document
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.errors import TransientError
from reindexer.stores.flaky import FlakyStore, parse_flaky
from reindexer.stores.sqlite_vec import SqliteVecStore

# `flaky(...,transient=0.5,seed=N)` draws from random.Random(N): these seeds give the schedules
# the tests below rely on (each test also checks the outcome that proves the schedule held).
SEED_FAILING_THREE_TIMES_THEN_NOT = 9
SEED_WITH_MANY_SHORT_RUNS_OF_FAILURES = 28

MakeStore = Callable[[str], FlakyStore]


@pytest.fixture
def make_store(data_dir: Path) -> Iterator[MakeStore]:
    """A real sqlite-vec collection wrapped in `flaky(sqlite-vec,OPTIONS)`; closed afterwards."""
    opened: list[FlakyStore] = []

    def make(options: str = "") -> FlakyStore:
        spec = f"flaky(sqlite-vec,{options})" if options else "flaky(sqlite-vec)"
        inner = SqliteVecStore.for_collection(data_dir, f"batches{len(opened)}", 384)
        store = FlakyStore(inner, parse_flaky(spec))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class Delays(list[float]):
    """Stands in for time.sleep: records each backoff instead of waiting it out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def documents(n: int, prefix: str = "doc") -> list[Document]:
    return [
        Document(f"{prefix}-{i}", f"document {i} about vector search", {"n": i}) for i in range(n)
    ]


def writer(store: FlakyStore, delays: Delays, policy: RetryPolicy | None = None) -> BatchWriter:
    return BatchWriter(
        HashingEmbedder(), store, policy or RetryPolicy(), sleep=delays, rng=random.Random(0)
    )


def test_write__clean_batch_is_written_whole_without_retries(make_store: MakeStore) -> None:
    store, delays = make_store(""), Delays()
    outcome = writer(store, delays).write(documents(16))
    assert (outcome.written, outcome.retries, outcome.failures) == (16, 0, [])
    assert outcome.failed_docs == 0
    assert sorted(store.ids()) == sorted(d.id for d in documents(16))
    assert delays == []


def test_write__empty_batch_writes_nothing(make_store: MakeStore) -> None:
    store = make_store("")
    outcome = writer(store, Delays()).write([])
    assert (outcome.written, outcome.retries, outcome.failures) == (0, 0, [])
    assert store.count() == 0


def test_write__poisoned_document_is_recorded_alone(make_store: MakeStore) -> None:
    store, delays = make_store("poison=doc-5"), Delays()
    outcome = writer(store, delays).write(documents(16))
    assert outcome.written == 15
    assert outcome.failed_docs == 1
    [failure] = outcome.failures
    assert failure.doc_ids == ["doc-5"]
    assert failure.error_type == "PermanentError"
    assert "doc-5" in failure.message
    assert failure.attempts == 1
    assert failure.transient is False
    assert "PermanentError: poisoned document 'doc-5'" in failure.traceback
    assert sorted(store.ids()) == sorted(f"doc-{i}" for i in range(16) if i != 5)
    assert delays == [], "a permanent error is split at once, never retried"


def test_write__poisoned_document_traceback_holds_only_its_own_error(
    make_store: MakeStore,
) -> None:
    store = make_store("poison=doc-5")
    [failure] = writer(store, Delays()).write(documents(16)).failures
    assert "During handling of the above exception" not in failure.traceback
    assert failure.traceback.count("PermanentError:") == 1


def test_write__two_poisoned_documents_are_two_failures(make_store: MakeStore) -> None:
    store = make_store("poison=doc-3,poison=doc-12")
    outcome = writer(store, Delays()).write(documents(16))
    assert outcome.written == 14
    assert outcome.failed_docs == 2
    assert sorted(f.doc_ids[0] for f in outcome.failures) == ["doc-12", "doc-3"]
    assert all(len(f.doc_ids) == 1 and not f.transient for f in outcome.failures)
    assert store.count() == 14
    assert {"doc-3", "doc-12"}.isdisjoint(store.ids())


def test_write__failure_record_is_frozen(make_store: MakeStore) -> None:
    [failure] = writer(make_store("poison=doc-0"), Delays()).write(documents(2)).failures
    assert isinstance(failure, FailureRecord)
    with pytest.raises(AttributeError):
        failure.attempts = 2  # type: ignore[misc]


def test_write__transient_errors_are_retried_with_growing_backoff(make_store: MakeStore) -> None:
    store = make_store(f"transient=0.5,seed={SEED_FAILING_THREE_TIMES_THEN_NOT}")
    delays, policy = Delays(), RetryPolicy(max_retries=3, backoff_seconds=0.1)
    outcome = writer(store, delays, policy).write(documents(16))
    assert (outcome.written, outcome.failures) == (16, [])
    assert outcome.retries == 3
    assert store.count() == 16
    assert len(delays) == outcome.retries
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert outcome.last_retried_error == "TransientError: simulated store timeout (flaky transient)"
    for attempt, delay in enumerate(delays, start=1):
        ceiling = policy.backoff_seconds * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


def test_write__transient_errors_past_max_retries_split_the_batch_and_write_its_halves(
    make_store: MakeStore,
) -> None:
    # The same schedule as above, with one retry fewer than the whole batch needs.
    store = make_store(f"transient=0.5,seed={SEED_FAILING_THREE_TIMES_THEN_NOT}")
    policy = RetryPolicy(max_retries=2)
    outcome = writer(store, Delays(), policy).write(documents(16))
    assert (outcome.written, outcome.failures) == (16, [])
    assert outcome.retries == policy.max_retries
    assert store.count() == 16


def test_write__document_failing_transiently_past_its_retries_is_recorded_as_transient(
    make_store: MakeStore,
) -> None:
    store, delays = make_store("transient=1.0"), Delays()
    outcome = writer(store, delays, RetryPolicy(max_retries=2)).write(documents(1))
    [failure] = outcome.failures
    assert failure.doc_ids == ["doc-0"]
    assert (failure.error_type, failure.attempts, failure.transient) == ("TransientError", 3, True)
    assert outcome.retries == len(delays) == 2
    assert outcome.written == 0 and store.count() == 0


@pytest.mark.parametrize("max_retries", [0, 3, 5])
def test_write__store_is_unreachable_after_breaker_threshold_transient_failures(
    make_store: MakeStore, max_retries: int
) -> None:
    store, delays, policy = make_store("transient=1.0"), Delays(), RetryPolicy(max_retries)
    with pytest.raises(StoreUnreachable) as raised:
        writer(store, delays, policy).write(documents(64))
    threshold = policy.breaker_threshold
    assert str(raised.value).startswith(f"{threshold} transient failures in a row")
    assert isinstance(raised.value.__cause__, TransientError)
    # Every failure but the last was either retried (after a backoff) or split the group.
    assert len(delays) < threshold
    assert store.count() == 0


def test_write__success_resets_the_count_of_consecutive_transient_failures(
    make_store: MakeStore,
) -> None:
    store = make_store(f"transient=0.5,seed={SEED_WITH_MANY_SHORT_RUNS_OF_FAILURES}")
    delays, policy = Delays(), RetryPolicy(max_retries=3)
    batch_writer = writer(store, delays, policy)
    outcomes = [batch_writer.write(documents(4, prefix=f"b{b}")) for b in range(10)]
    # Far more transient failures than the threshold, but never that many in a row.
    assert sum(o.retries for o in outcomes) > policy.breaker_threshold
    assert sum(o.written for o in outcomes) == 40
    assert store.count() == 40


@contextlib.contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (as root); unmounted afterwards, also on failure."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs at {path}: {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_write__full_disk_fails_the_store_at_once_and_blames_no_document(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "6m") as disk:
        store = FlakyStore(SqliteVecStore(disk / "c.sqlite-vec", 384), parse_flaky("flaky(x)"))
        delays, outcomes = Delays(), []
        batch_writer = writer(store, delays)
        try:
            with pytest.raises(StoreFailed) as raised:
                for b in range(100):  # vec0 grows by chunks of 1024 vectors (1.5 MB)
                    outcomes.append(batch_writer.write(documents(100, prefix=f"b{b}")))
        finally:
            store.close()
    assert isinstance(raised.value.cause, apsw.FullError)
    assert str(raised.value) == (
        f"disk full (FullError: {raised.value.cause}) at {disk / 'c.sqlite-vec'}"
    )
    # Neither retried nor bisected: each earlier batch was written whole, and no failure recorded.
    assert outcomes and all(o.failures == [] and o.written == 100 for o in outcomes)
    assert delays == []


def test_write__document_errors_are_still_bisected_beside_store_failures(
    make_store: MakeStore,
) -> None:
    store = make_store("poison=doc-3")
    outcome = writer(store, Delays()).write(documents(8))
    assert [f.doc_ids for f in outcome.failures] == [["doc-3"]]
    assert outcome.written == 7
