"""The sqlite-vec store through apsw, and the flaky(...) spec that wraps a store with faults."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reindexer.documents import Document
from reindexer.embedders import open_embedder
from reindexer.errors import PermanentError, SpecError, TransientError, UnknownBackend
from reindexer.stores import VectorStore, open_store, validate_store
from reindexer.stores.flaky import FlakyStore, parse_flaky
from reindexer.stores.sqlite_vec import SqliteVecStore

TEXTS = {
    "cat": "the cat sat on the mat and purred",
    "dog": "a dog barked loudly at the postman",
    "sql": "postgres and sqlite are relational databases",
    "vec": "vector search finds nearest neighbours by cosine distance",
}


def docs(**texts: str) -> list[Document]:
    return [Document(k, v, {"key": k}) for k, v in texts.items()]


@pytest.fixture
def store(data_dir: Path) -> Iterator[VectorStore]:
    s = open_store("sqlite-vec", "test", 384)
    try:
        yield s
    finally:
        s.close()


def write(store: VectorStore, documents: list[Document]) -> None:
    store.upsert(documents, open_embedder("hashing").embed([d.text for d in documents]))


def test_sqlite_vec__upsert_writes_one_row_per_document(store: VectorStore) -> None:
    write(store, docs(**TEXTS))
    assert store.count() == 4
    assert sorted(store.ids()) == sorted(TEXTS)


def test_sqlite_vec__re_upsert_is_idempotent_and_keeps_the_latest_text(store: VectorStore) -> None:
    write(store, docs(**TEXTS))
    write(store, docs(**TEXTS))
    write(store, docs(cat="a cat again"))
    assert store.count() == 4
    assert sorted(store.ids()) == sorted(TEXTS)
    vector = open_embedder("hashing").embed(["a cat again"])[0]
    hit = store.search(vector, k=1)[0]
    assert (hit.id, hit.text, hit.metadata) == ("cat", "a cat again", {"key": "cat"})
    assert hit.distance == pytest.approx(0.0, abs=1e-5)


def test_sqlite_vec__delete_removes_only_the_given_ids(store: VectorStore) -> None:
    write(store, docs(**TEXTS))
    assert store.delete(["cat", "dog", "not-there"]) == 2
    assert sorted(store.ids()) == ["sql", "vec"]
    assert store.count() == 2


def test_sqlite_vec__search_returns_the_nearest_neighbour_first(store: VectorStore) -> None:
    write(store, docs(**TEXTS))
    query = open_embedder("hashing").embed(["which databases are relational, postgres or sqlite"])
    hits = store.search(query[0], k=3)
    assert [h.id for h in hits][0] == "sql"
    assert len(hits) == 3
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_sqlite_vec__search_accepts_float64_query_vectors(store: VectorStore) -> None:
    write(store, docs(**TEXTS))
    query = open_embedder("hashing").embed([TEXTS["dog"]])[0].astype(np.float64)
    assert store.search(query, k=1)[0].id == "dog"


def test_sqlite_vec__data_survives_reopening_the_collection(data_dir: Path) -> None:
    first = open_store("sqlite-vec", "persist", 384)
    write(first, docs(**TEXTS))
    first.close()
    second = open_store("sqlite-vec", "persist", 384)
    try:
        assert second.count() == 4
    finally:
        second.close()
    assert (data_dir / "stores" / "persist.sqlite-vec").is_file()


def test_sqlite_vec__mismatched_documents_and_vectors_are_refused(store: VectorStore) -> None:
    vectors = open_embedder("hashing").embed(["one"])
    with pytest.raises(ValueError, match="2 documents but 1 vectors"):
        store.upsert(docs(a="x", b="y"), vectors)
    assert store.count() == 0


@pytest.mark.parametrize(
    "name", ["", "-lead", "has space", "a/b", "x" * 65, "dots.no", "fuzz\n", "fuzz\nmore"]
)
def test_sqlite_vec__bad_collection_names_are_refused(data_dir: Path, name: str) -> None:
    with pytest.raises(SpecError, match="collection"):
        open_store("sqlite-vec", name, 384)
    assert not (data_dir / "stores").exists() or not any((data_dir / "stores").iterdir())


# -- flaky(...) spec -----------------------------------------------------------------------


def test_flaky_spec__parses_every_option() -> None:
    options = parse_flaky(
        "flaky(sqlite-vec,transient=0.25,permanent=0.1,poison=a,poison=b,latency=5,seed=7)"
    )
    assert options.inner == "sqlite-vec"
    assert (options.transient, options.permanent, options.latency_ms, options.seed) == (
        0.25,
        0.1,
        5.0,
        7,
    )
    assert options.poison == frozenset({"a", "b"})


def test_flaky_spec__options_are_optional() -> None:
    options = parse_flaky("flaky(sqlite-vec)")
    assert (options.inner, options.transient, options.permanent, options.poison) == (
        "sqlite-vec",
        0.0,
        0.0,
        frozenset(),
    )


def test_flaky_spec__poison_ids_may_hold_angle_brackets_equals_and_slashes() -> None:
    options = parse_flaky("flaky(sqlite-vec,poison=<b>x=1</b>,poison=dir/file.txt,poison=a==b)")
    assert options.poison == frozenset({"<b>x=1</b>", "dir/file.txt", "a==b"})
    validate_store("flaky(sqlite-vec,poison=<b>x=1</b>,poison=dir/file.txt)")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flaky(sqlite-vec,transient=lots)", "not a number"),
        ("flaky(sqlite-vec,transient=1.5)", "between 0 and 1"),
        ("flaky(sqlite-vec,permanent=-0.1)", "between 0 and 1"),
        ("flaky(sqlite-vec,transient=nan)", "between 0 and 1"),
        ("flaky(sqlite-vec,latency=-1)", "latency"),
        ("flaky(sqlite-vec,latency=soon)", "not a number"),
        ("flaky(sqlite-vec,seed=1.5)", "not an integer"),
        ("flaky(sqlite-vec,poison=)", "poison needs a document id"),
        ("flaky(sqlite-vec,colour=red)", "unknown option 'colour'"),
        ("flaky(sqlite-vec,transient)", "must be key=value"),
        ("flaky(transient=0.1)", "must name its inner store first"),
        ("flaky(,transient=0.1)", "must name its inner store first"),
        ("flaky(sqlite-vec", "must look like flaky"),
    ],
)
def test_flaky_spec__bad_options_raise_spec_error(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        validate_store(spec)


@pytest.mark.parametrize("spec", ["qdrant", "sqlite_vec", "", "flaky(chroma,transient=0.1)"])
def test_store_spec__unknown_backend_is_refused(spec: str) -> None:
    with pytest.raises(UnknownBackend, match="unknown store"):
        validate_store(spec)


@pytest.mark.parametrize(
    ("spec", "setting"),
    [
        ("pgvector", "REINDEXER_PGVECTOR_URL"),
        ("milvus", "REINDEXER_MILVUS_URI"),
        ("flaky(pgvector)", "REINDEXER_PGVECTOR_URL"),
        ("flaky(milvus,transient=0.1)", "REINDEXER_MILVUS_URI"),
    ],
)
def test_store_spec__server_store_without_its_setting_is_refused_naming_it(
    settings: Any, spec: str, setting: str
) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=None, milvus_uri=None)
    with pytest.raises(SpecError, match=setting) as raised:
        validate_store(spec)
    assert not isinstance(raised.value, UnknownBackend)


@pytest.mark.parametrize("spec", ["pgvector", "milvus", "flaky(pgvector)", "flaky(milvus)"])
def test_store_spec__server_store_with_its_setting_is_accepted_without_connecting(
    settings: Any, spec: str
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so a connection attempt would fail.
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER,
        pgvector_url="postgresql://nobody@127.0.0.1:9/none",
        milvus_uri="http://127.0.0.1:9",
    )
    validate_store(spec)


def test_flaky_store__poisoned_document_always_fails_permanently(data_dir: Path) -> None:
    store = open_store("flaky(sqlite-vec,poison=<p>)", "flaky", 384)
    try:
        assert isinstance(store, FlakyStore)
        with pytest.raises(PermanentError, match="<p>"):
            write(store, docs(ok="fine", **{"<p>": "poisoned"}))
        write(store, docs(ok="fine"))
        assert list(store.ids()) == ["ok"]
    finally:
        store.close()


def test_flaky_store__transient_failures_follow_the_seeded_rate(data_dir: Path) -> None:
    def pattern() -> list[bool]:
        inner = SqliteVecStore.for_collection(data_dir, "seeded", 384)
        store = FlakyStore(inner, parse_flaky("flaky(sqlite-vec,transient=0.5,seed=3)"))
        outcomes = []
        try:
            for i in range(40):
                try:
                    write(store, docs(**{f"d{i}": "text"}))
                    outcomes.append(True)
                except TransientError:
                    outcomes.append(False)
        finally:
            store.close()
        return outcomes

    first, second = pattern(), pattern()
    assert first == second
    assert 5 < first.count(False) < 35


def test_sqlite_vec__two_writers_on_one_collection_wait_their_turn_instead_of_failing(
    data_dir: Path,
) -> None:
    # Slices of one job write one collection from several workers. A deferred transaction that
    # read before another writer committed cannot become a writer in WAL mode ("database is
    # locked" at once, whatever the busy timeout); the store's writes take the lock at BEGIN.
    errors: list[BaseException] = []
    stores = [open_store("sqlite-vec", "shared", 384) for _ in range(2)]
    rng = np.random.default_rng(7)
    vectors = rng.random((40, 384), dtype=np.float32)

    def write_many(writer: int, target: VectorStore) -> None:
        try:
            for batch in range(40):
                ids = [f"w{writer}-b{batch}-{i}" for i in range(10)] + ["shared-id"]
                target.upsert(
                    [Document(doc_id, f"text {doc_id}", {}) for doc_id in ids], vectors[: len(ids)]
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(n, s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert stores[0].count() == 2 * 40 * 10 + 1
    finally:
        for s in stores:
            s.close()
