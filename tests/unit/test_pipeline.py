"""The pipeline's parts: the prefetch thread's bounds, order, errors and stop; the choice of path
per job; and the batch writer's two steps, whose store step reuses the vectors it was given."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reindexer.batching import BatchWriter, RetryPolicy
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.embedders.minilm import MinilmEmbedder
from reindexer.embedders.openai import OpenAIEmbedder
from reindexer.pipeline import PREFETCH_DEPTH, Prefetcher, choose_path, store_io
from reindexer.stores.flaky import FlakyStore, parse_flaky
from reindexer.stores.sqlite_vec import SqliteVecStore

WAIT_SECONDS = 10.0


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Counted:
    """A generator of 0..n-1 that records what it started producing and whether it was closed,
    and in which thread it ran."""

    def __init__(self, n: int, *, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.started: list[int] = []
        self.closed_in: str | None = None
        self.threads: set[str] = set()

    def items(self) -> Generator[int, None, None]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                self.started.append(i)
                if i == self.fail_at:
                    raise ValueError(f"source broke at item {i}")
                yield i
        finally:
            self.closed_in = threading.current_thread().name


def started_at_least(source: Counted, n: int) -> Callable[[], bool]:
    return lambda: len(source.started) >= n


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-prefetch")]


def test_prefetcher__hands_out_every_item_in_order_from_its_own_thread() -> None:
    source = Counted(25)
    with Prefetcher(source.items(), depth=2, name="test-prefetch-order") as ahead:
        assert list(ahead) == list(range(25))
    assert source.threads == {"test-prefetch-order"}
    assert source.closed_in == "test-prefetch-order"
    assert prefetch_threads() == []


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_prefetcher__never_runs_more_than_depth_items_ahead_of_its_consumer(depth: int) -> None:
    source = Counted(12)
    ahead = Prefetcher(source.items(), depth=depth, name="test-prefetch-depth")
    try:
        for i, item in enumerate(ahead):
            assert item == i
            # The thread fills every slot it may while the consumer holds item i, then waits.
            reach = min(i + depth, source.n)
            wait_until(started_at_least(source, reach), f"{reach} items started")
            time.sleep(0.02)  # time to overrun the bound, if it could
            assert len(source.started) == reach, (i, source.started)
    finally:
        ahead.close()
    assert prefetch_threads() == []


def test_prefetcher__an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    source = Counted(10, fail_at=3)
    ahead = Prefetcher(source.items(), depth=2, name="test-prefetch-error")
    got: list[int] = []
    with pytest.raises(ValueError, match="source broke at item 3") as raised:
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2]
    # The original exception, raised where the generator raised it.
    assert "items" in {code.co_name for code in _frames(raised.value)}
    assert prefetch_threads() == [], "the thread has ended before the error is raised"
    assert list(ahead) == [], "the error is raised once"
    assert ahead.close() == []


def _frames(exc: BaseException) -> Iterator[Any]:
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def test_prefetcher__close_stops_the_thread_and_returns_what_it_read_ahead() -> None:
    source = Counted(100)
    ahead = Prefetcher(source.items(), depth=2, name="test-prefetch-close")
    assert next(ahead) == 0
    wait_until(lambda: len(source.started) == 2, "the next item read ahead")
    assert ahead.close() == [1]
    assert prefetch_threads() == []
    assert source.closed_in == "test-prefetch-close", "its finally ran, in its own thread"
    assert source.started == [0, 1], "nothing read past the stop"
    assert ahead.close() == [], "closing again drops nothing more"
    assert list(ahead) == []


def test_prefetcher__close_waits_for_the_item_being_produced_and_drops_it() -> None:
    release = threading.Event()

    def slow() -> Generator[int, None, None]:
        yield 0
        release.wait()
        yield 1
        yield 2

    ahead = Prefetcher(slow(), depth=2, name="test-prefetch-slow")
    assert next(ahead) == 0
    threading.Timer(0.05, release.set).start()
    assert ahead.close() == [1]
    assert prefetch_threads() == []


def test_prefetcher__refuses_a_depth_below_one() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Prefetcher(Counted(1).items(), depth=0, name="test-prefetch-none")


def test_prefetch_depth__is_the_batch_being_written_and_the_next() -> None:
    assert PREFETCH_DEPTH == 2


# Which path a job takes.


def test_embedders__declare_whether_they_release_the_gil() -> None:
    assert HashingEmbedder.releases_gil is False
    assert MinilmEmbedder.releases_gil is True
    assert OpenAIEmbedder("m", "http://127.0.0.1:9").releases_gil is True


@pytest.mark.parametrize(
    ("store", "waits"),
    [
        ("sqlite-vec", False),
        ("flaky(sqlite-vec,transient=0.5,poison=a)", False),
        ("flaky(sqlite-vec,latency=20)", True),
        ("pgvector", True),
        ("milvus", True),
        ("flaky(pgvector,transient=0.1)", True),
    ],
)
def test_store_io__socket_stores_and_flaky_latency_wait_on_io(
    settings: Any, store: str, waits: bool
) -> None:
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER,
        pgvector_url="postgres://postgres@127.0.0.1:5432/x",
        milvus_uri="http://127.0.0.1:19530",
    )
    assert (store_io(store) is not None) is waits


@pytest.mark.parametrize(
    ("setting", "embedder", "store", "pipelined"),
    [
        ("auto", "hashing", "sqlite-vec", False),
        ("auto", "hashing", "flaky(sqlite-vec,latency=20)", True),
        ("auto", "openai", "sqlite-vec", True),
        ("on", "hashing", "sqlite-vec", True),
        ("off", "openai", "flaky(sqlite-vec,latency=20)", False),
    ],
)
def test_choose_path__follows_the_setting_and_the_declared_properties(
    setting: str, embedder: str, store: str, pipelined: bool
) -> None:
    chosen = HashingEmbedder() if embedder == "hashing" else OpenAIEmbedder("m", "http://x:9")
    path = choose_path(setting, chosen, store)
    assert path.pipelined is pipelined
    assert path.reason.startswith("pipelined" if pipelined else "sequential")
    if setting != "auto":
        assert f"REINDEXER_PIPELINE={setting}" in path.reason


# The batch writer's two steps.


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, texts: Any) -> Vectors:
        self.embedded += len(texts)
        return super().embed(texts)


def documents(n: int) -> list[Document]:
    return [Document(f"doc-{i}", f"document {i} about pipelines", {"n": i}) for i in range(n)]


@pytest.fixture
def poisoned_store(tmp_path: Path) -> Iterator[FlakyStore]:
    inner = SqliteVecStore(tmp_path / "c.sqlite-vec", 384)
    store = FlakyStore(inner, parse_flaky("flaky(sqlite-vec,poison=doc-5,poison=doc-11)"))
    yield store
    store.close()


def test_store_batch__halving_on_store_errors_reuses_the_vectors_without_re_embedding(
    poisoned_store: FlakyStore,
) -> None:
    embedder = CountingEmbedder()
    writer = BatchWriter(embedder, poisoned_store, RetryPolicy(), sleep=lambda _: None)
    docs = documents(16)
    embedded = writer.embed(docs)
    assert embedder.embedded == 16 and len(embedded.docs) == 16
    # Vectors of other texts: the store must write these, not vectors it would recompute.
    embedded.vectors = HashingEmbedder().embed([f"unrelated text {i}" for i in range(16)])
    outcome = writer.store_batch(embedded)
    assert embedder.embedded == 16, "the store step never embeds"
    assert outcome.written == 14
    assert sorted(f.doc_ids[0] for f in outcome.failures) == ["doc-11", "doc-5"]
    for i in (0, 7, 15):
        [hit] = poisoned_store.search(embedded.vectors[i], k=1)
        assert (hit.id, round(hit.distance, 4)) == (f"doc-{i}", 0.0)


class RefusingEmbedder(HashingEmbedder):
    """Refuses one text for good, as a server refuses a text it cannot embed."""

    def embed(self, texts: Any) -> Vectors:
        if any("document 3 " in text for text in texts):
            raise ValueError("embedding server refused the text of doc-3")
        return super().embed(texts)


def test_embed__a_document_that_fails_to_embed_is_recorded_and_the_others_stored(
    poisoned_store: FlakyStore,
) -> None:
    writer = BatchWriter(RefusingEmbedder(), poisoned_store, RetryPolicy(), sleep=lambda _: None)
    embedded = writer.embed(documents(8))
    assert [doc.id for doc in embedded.docs] == [f"doc-{i}" for i in range(8) if i != 3]
    assert embedded.vectors.shape == (7, 384) and embedded.vectors.dtype == np.float32
    [failure] = embedded.outcome.failures
    assert (failure.doc_ids, failure.error_type, failure.transient) == (
        ["doc-3"],
        "ValueError",
        False,
    )
    outcome = writer.store_batch(embedded)
    assert outcome is embedded.outcome
    assert (outcome.written, [f.doc_ids for f in outcome.failures]) == (6, [["doc-3"], ["doc-5"]])
    assert sorted(poisoned_store.ids()) == sorted(f"doc-{i}" for i in range(8) if i not in (3, 5))


def test_embed__an_empty_batch_has_no_vectors(poisoned_store: FlakyStore) -> None:
    writer = BatchWriter(HashingEmbedder(), poisoned_store, RetryPolicy())
    embedded = writer.embed([])
    assert embedded.docs == [] and embedded.vectors.shape == (0, 384)
    assert writer.store_batch(embedded).written == 0
