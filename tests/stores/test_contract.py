"""The VectorStore contract, one suite for every store: sqlite-vec, pgvector, milvus, flaky(...).

Each store is opened through the registry (`open_store(spec, collection, dims)`) with the settings
pointing at a real server, as a worker opens it. See harnesses.py for the stores and conftest.py
for which tests run on which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from reindexer.documents import Document
from reindexer.errors import DimensionMismatch, SpecError, TransientError, is_transient
from reindexer.stores import VectorStore, store_backend, validate_collection
from reindexer.stores.base import IndexProgress
from tests.stores.harnesses import (
    DIMS,
    OTHER_DIMS,
    TRANSIENT_RATE,
    Harness,
    cosine_distance,
    make_docs,
    until_it_works,
    vector_for,
    vectors_of,
)

# Within float32 rounding of the stores' cosine arithmetic.
CLOSE = 1e-4


def written(harness: Harness, docs: list[Document]) -> VectorStore:
    store = harness.open(harness.collection())
    harness.write(store, docs)
    return store


# -- upsert ----------------------------------------------------------------------------------------


def test_upsert__writes_one_row_per_document(harness: Harness) -> None:
    store = written(harness, make_docs(5))
    assert store.count() == 5
    assert sorted(store.ids()) == sorted(d.id for d in make_docs(5))


def test_upsert__of_the_same_ids_again_leaves_one_row_each(harness: Harness) -> None:
    store = written(harness, make_docs(5))
    harness.write(store, make_docs(5))
    harness.write(store, make_docs(3))
    assert store.count() == 5
    assert sorted(store.ids()) == sorted(d.id for d in make_docs(5))


def test_upsert__again_replaces_text_metadata_and_vector(harness: Harness) -> None:
    store = written(harness, make_docs(5))
    changed = Document("doc-2", "doc two, rewritten", {"n": 2, "version": 2})
    harness.write(store, [changed])
    assert store.count() == 5
    hit = store.search(vector_for(changed.text), k=1)[0]
    assert (hit.id, hit.text, hit.metadata) == (changed.id, changed.text, changed.metadata)
    assert hit.distance == pytest.approx(0.0, abs=CLOSE)
    # The old vector is gone: its nearest is no longer at distance 0.
    old = store.search(vector_for("doc number 2"), k=5)
    assert all(h.distance > 1e-3 for h in old), old
    assert [h for h in old if h.id == "doc-2"][0].text == changed.text


# -- count, delete, ids ----------------------------------------------------------------------------


def test_exists__is_false_until_the_collection_is_opened_and_asking_creates_nothing(
    harness: Harness,
) -> None:
    backend = store_backend(harness.spec)
    name = harness.collection()
    assert backend.exists(name) is False
    assert backend.exists(name) is False, "asking twice: the first ask made nothing"
    harness.open(name)
    assert backend.exists(name) is True


def test_count__of_a_new_collection_is_zero(harness: Harness) -> None:
    store = harness.open(harness.collection())
    assert store.count() == 0
    assert list(store.ids()) == []
    assert store.search(vector_for("anything"), k=3) == []


def test_delete__returns_how_many_rows_went_and_ignores_missing_ids(harness: Harness) -> None:
    store = written(harness, make_docs(6))
    assert store.delete(["doc-1", "doc-4", "not-there", "doc-1"]) == 2
    assert store.count() == 4
    assert sorted(store.ids()) == ["doc-0", "doc-2", "doc-3", "doc-5"]
    found = {h.id for h in store.search(vector_for("doc number 1"), k=10)}
    assert found == {"doc-0", "doc-2", "doc-3", "doc-5"}
    assert store.delete(["doc-1", "never"]) == 0
    assert store.delete([]) == 0
    assert store.count() == 4


def test_ids__lists_each_row_once_across_pages(harness: Harness) -> None:
    # More rows than a page of any store's ids() (pgvector 10,000, Milvus 5,000).
    docs = make_docs(10_001)
    store = harness.open(harness.collection())
    for start in range(0, len(docs), 2_000):
        harness.write(store, docs[start : start + 2_000])
    ids = list(store.ids())
    assert len(ids) == len(docs)
    assert set(ids) == {d.id for d in docs}
    assert store.count() == len(docs)


# -- search ----------------------------------------------------------------------------------------


def test_search__each_document_is_its_own_nearest_at_distance_zero(harness: Harness) -> None:
    docs = make_docs(12)
    store = written(harness, docs)
    for doc in docs:
        hit = store.search(vector_for(doc.text), k=1)[0]
        assert hit.id == doc.id
        assert hit.distance == pytest.approx(0.0, abs=CLOSE)


def test_search__returns_the_k_nearest_by_cosine_distance_nearest_first(harness: Harness) -> None:
    docs = make_docs(30)
    store = written(harness, docs)
    query = vector_for("a query of its own")
    expected = sorted(
        (cosine_distance(query, v), d.id) for d, v in zip(docs, vectors_of(docs), strict=True)
    )
    hits = store.search(query, k=7)
    assert [h.id for h in hits] == [doc_id for _, doc_id in expected[:7]]
    distances = [h.distance for h in hits]
    assert distances == sorted(distances)
    assert distances == pytest.approx([d for d, _ in expected[:7]], abs=CLOSE)


def test_search__k_above_the_count_returns_every_document(harness: Harness) -> None:
    store = written(harness, make_docs(4))
    hits = store.search(vector_for("doc number 0"), k=50)
    assert sorted(h.id for h in hits) == ["doc-0", "doc-1", "doc-2", "doc-3"]
    assert len(store.search(vector_for("doc number 0"), k=1)) == 1


def test_search__returns_text_and_metadata_as_written(harness: Harness) -> None:
    docs = make_docs(5)
    store = written(harness, docs)
    hits = store.search(vector_for("doc number 3"), k=5)
    assert {h.id: (h.text, h.metadata) for h in hits} == {d.id: (d.text, d.metadata) for d in docs}


# -- what round-trips ------------------------------------------------------------------------------

UNICODE_TEXT = 'Grüße, 日本語, emoji 🚀, RTL עברית, "quotes", back\\slash,\nnew line\tand tab'
NESTED = {
    "title": "Ünïcödé ✓",
    "tags": ["a", "b", "ç"],
    "source": {"path": "dir/ü.md", "page": 3, "spans": [[0, 4], [10, 12]]},
    "score": 0.25,
    "draft": False,
    "empty": {},
}


def test_unicode_text_and_nested_metadata_round_trip(harness: Harness) -> None:
    doc = Document("unicode", UNICODE_TEXT, NESTED)
    store = written(harness, [doc, *make_docs(3)])
    hit = store.search(vector_for(UNICODE_TEXT), k=1)[0]
    assert (hit.id, hit.text, hit.metadata) == ("unicode", UNICODE_TEXT, NESTED)


ODD_IDS = ["dir/sub dir/ü file.md", 'quote"d', "it's", "back\\slash", "日本", "a,b;c", "#1 <x>"]


def test_ids__with_slashes_quotes_and_unicode_round_trip_and_delete(harness: Harness) -> None:
    docs = [Document(doc_id, f"text of {doc_id}") for doc_id in ODD_IDS]
    store = written(harness, docs)
    assert sorted(store.ids()) == sorted(ODD_IDS)
    assert store.search(vector_for(docs[1].text), k=1)[0].id == ODD_IDS[1]
    harness.write(store, docs)
    assert store.count() == len(ODD_IDS)
    assert store.delete(ODD_IDS[:4]) == 4
    assert sorted(store.ids()) == sorted(ODD_IDS[4:])


def test_reopen__a_new_store_object_sees_what_the_last_one_wrote(harness: Harness) -> None:
    name = harness.collection()
    first = harness.open(name)
    harness.write(first, make_docs(5))
    first.close()
    second = harness.open(name)
    assert second.count() == 5
    assert second.search(vector_for("doc number 4"), k=1)[0].id == "doc-4"


# -- collection names, dimensions ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "docs", "docs_2024", "x1", "m" * 20])
def test_collection_names__plain_lower_case_names_are_accepted(harness: Harness, name: str) -> None:
    validate_collection(harness.spec, name)


def test_collection_names__the_longest_allowed_name_opens(harness: Harness) -> None:
    longest = harness.collection(harness.kind.max_name_length)
    validate_collection(harness.spec, longest)
    store = harness.open(longest)
    harness.write(store, make_docs(1))
    assert store.count() == 1


TOO_LONG = "<one over the store's limit>"


@pytest.mark.parametrize(
    "name",
    ["a;drop", "../x", "", TOO_LONG, '"x"', "x'; DROP TABLE x; --", "a b", "docs\n", "a/b"],
)
def test_collection_names__hostile_ones_are_refused(harness: Harness, name: str) -> None:
    if name == TOO_LONG:
        name = "a" * (harness.kind.max_name_length + 1)
    with pytest.raises(SpecError, match="collection"):
        validate_collection(harness.spec, name)
    with pytest.raises(SpecError, match="collection"):
        harness.open(name)


def test_open__other_dimensions_raise_dimension_mismatch_before_writing(harness: Harness) -> None:
    name = harness.collection()
    store = harness.open(name)
    harness.write(store, make_docs(3))
    store.close()
    with pytest.raises(DimensionMismatch) as raised:
        harness.open(name, OTHER_DIMS)
    assert (raised.value.existing, raised.value.wanted) == (DIMS, OTHER_DIMS)
    assert str(DIMS) in str(raised.value) and str(OTHER_DIMS) in str(raised.value)
    again = harness.open(name)
    assert again.count() == 3
    assert again.search(vector_for("doc number 1"), k=1)[0].id == "doc-1"


# -- the index -------------------------------------------------------------------------------------


def test_build_index__says_whether_it_built_one_and_search_still_works(harness: Harness) -> None:
    docs = make_docs(50)
    store = written(harness, docs)
    reports: list[IndexProgress] = []

    def report(progress: IndexProgress) -> bool:
        reports.append(progress)
        return True

    built = store.build_index(report)
    # Only pgvector has an index to build (HNSW); sqlite-vec searches exactly, Milvus indexes
    # at creation. The builder reports before it starts, so the job can enter its phase.
    builds = "pgvector" in harness.spec
    assert built is builds
    assert bool(reports) is builds, reports
    assert store.build_index(report) is False  # it exists now, or never needed building
    assert store.count() == 50
    for doc in docs[:5]:
        assert store.search(vector_for(doc.text), k=1)[0].id == doc.id


# -- a server restarted between two calls ----------------------------------------------------------

# One store object per call: each makes its first call after the restart on an old connection.
AFTER_RESTART: dict[str, Callable[[Harness, VectorStore], Any]] = {
    "upsert": lambda h, s: h.write(s, [Document("after", "written after the restart")]),
    "count": lambda h, s: s.count(),
    "ids": lambda h, s: list(s.ids()),
    "search": lambda h, s: s.search(vector_for("doc number 0"), k=3),
    "delete": lambda h, s: s.delete(["doc-9"]),
}


def test_server_restart__between_two_calls_each_store_recovers_and_loses_nothing(
    server_harness: Harness,
) -> None:
    name = server_harness.collection()
    stores = {call: server_harness.open(name) for call in AFTER_RESTART}
    server_harness.write(stores["upsert"], make_docs(10))
    for store in stores.values():
        assert store.count() == 10  # each store object has used its connection
    server_harness.restart()
    for call, action in AFTER_RESTART.items():
        recovery = until_it_works(functools.partial(action, server_harness, stores[call]))
        assert all(is_transient(e) for e in recovery.errors), (call, recovery.errors)
    # "delete" removed doc-9 and "upsert" added "after"; the rest is as it was before.
    expected = sorted([d.id for d in make_docs(9)] + ["after"])
    for call, store in stores.items():
        assert sorted(store.ids()) == expected, call
    fresh = server_harness.open(name)
    assert fresh.count() == 10
    assert fresh.search(vector_for("doc number 5"), k=1)[0].id == "doc-5"


# -- flaky(...) with transient faults --------------------------------------------------------------


def outcomes(harness: Harness, batches: int) -> tuple[list[bool], VectorStore]:
    """Whether each of `batches` one-document upserts went through, on a fresh collection."""
    store = harness.open(harness.collection())
    results = []
    for i in range(batches):
        doc = Document(f"d{i}", f"text {i}")
        before = store.count()
        try:
            store.upsert([doc], vectors_of([doc]))
            results.append(True)
        except TransientError as exc:
            assert is_transient(exc)
            assert store.count() == before  # a failed batch wrote nothing
            results.append(False)
    return results, store


def test_flaky_transient__fails_on_its_seeded_schedule_and_a_retry_passes(
    transient_harness: Harness,
) -> None:
    first, store = outcomes(transient_harness, 30)
    second, _ = outcomes(transient_harness, 30)
    assert first == second  # the same seed, the same schedule
    # Seed 7 at rate 0.5: a fixed schedule, so these bounds hold or never do.
    failures = first.count(False)
    assert 0.2 * 30 < failures < 0.8 * 30, (TRANSIENT_RATE, first)
    missing = [Document(f"d{i}", f"text {i}") for i, ok in enumerate(first) if not ok]
    transient_harness.write(store, missing)  # retried until each write passes
    assert store.count() == 30
    assert sorted(store.ids()) == sorted(f"d{i}" for i in range(30))
