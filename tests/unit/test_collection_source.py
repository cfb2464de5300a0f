"""`collection:STORE/NAME` against real stores: sqlite-vec files here, and each server store once
(pgvector via pgserver, milvus-lite) for paging and metadata, which are each store's own code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reindexer.documents import Document, Malformed
from reindexer.errors import SourceUnavailable, SpecError
from reindexer.sources import open_source
from reindexer.sources.collection import CollectionReader, CollectionSource, refers_to
from reindexer.stores import store_backend
from tests.stores.harnesses import DIMS, vectors_of
from tests.unit.test_store_aliases import configure

UNICODE = "Ünïcødé ✓ — 日本語のテキスト, emoji 🚀, RTL שלום"


def corpus(n: int, prefix: str = "d") -> list[Document]:
    return [
        Document(
            f"{prefix}{i:04d}", f"{UNICODE} {i}", {"n": i, "tags": ["x", "ÿ"], "deep": {"k": i}}
        )
        for i in range(n)
    ]


def fill(spec: str, name: str, docs: list[Document]) -> None:
    store = store_backend(spec).open(name, DIMS)
    try:
        for start in range(0, len(docs), 200):
            chunk = docs[start : start + 200]
            store.upsert(chunk, vectors_of(chunk))
    finally:
        store.close()


def read_all(source: CollectionSource, size: int = 7, **open_args: Any) -> list[Document]:
    reader = source.open(**open_args)
    out: list[Document] = []
    try:
        while batch := reader.read_batch(size):
            assert all(isinstance(r, Document) for r in batch), batch
            out.extend(r for r in batch if isinstance(r, Document))
    finally:
        reader.close()
    return out


def source(spec: str) -> CollectionSource:
    opened = open_source(spec)
    assert isinstance(opened, CollectionSource)
    return opened


@pytest.mark.parametrize(
    "store",
    [
        pytest.param("sqlite-vec", id="sqlite-vec"),
        pytest.param("pgvector", id="pgvector", marks=pytest.mark.backends),
        pytest.param("milvus", id="milvus", marks=pytest.mark.backends),
    ],
)
def test_source__pages_in_id_order_with_text_and_metadata_whole(
    store: str, data_dir: Path, settings: Any, request: pytest.FixtureRequest
) -> None:
    configure(settings, store, request)
    docs = corpus(53)
    fill(store, "src_docs", docs)
    src = source(f"collection:{store}/src_docs")
    assert src.count() == 53
    read = read_all(src, size=10)
    assert [d.id for d in read] == [d.id for d in docs], "every id once, in id order"
    assert [(d.text, d.metadata) for d in read] == [(d.text, d.metadata) for d in docs]
    assert read[3].locator == "id=d0003"


def test_source__resumes_after_its_checkpoint(data_dir: Path) -> None:
    fill("sqlite-vec", "docs", corpus(30))
    src = source("collection:sqlite-vec/docs")
    reader = src.open()
    first = reader.read_batch(12)
    checkpoint = reader.checkpoint()
    reader.close()
    assert checkpoint == {"collection": "docs", "last_id": "d0011"}
    rest = read_all(src, size=5, checkpoint=checkpoint)
    assert [d.id for d in first] + [d.id for d in rest] == [f"d{i:04d}" for i in range(30)]


def test_source__an_alias_is_read_as_the_collection_it_served_when_the_job_began(
    data_dir: Path,
) -> None:
    backend = store_backend("sqlite-vec")
    fill("sqlite-vec", "docs__1", corpus(10, "old"))
    fill("sqlite-vec", "docs__2", corpus(4, "new"))
    backend.point_alias("docs", "docs__1")
    src = source("collection:sqlite-vec/docs")
    reader = src.open()
    first = reader.read_batch(6)
    checkpoint = reader.checkpoint()
    reader.close()
    assert checkpoint["collection"] == "docs__1"
    backend.point_alias("docs", "docs__2")  # moved mid-job (its own swap, say)
    rest = read_all(src, checkpoint=checkpoint)
    assert [d.id for d in first + rest] == [f"old{i:04d}" for i in range(10)]
    assert src.count() == 4, "a new job counts what the alias serves now"


def test_source__splits_into_id_ranges_that_hold_every_document_once(data_dir: Path) -> None:
    docs = corpus(101)
    fill("sqlite-vec", "docs", docs)
    src = source("collection:sqlite-vec/docs")
    slices = src.split(4)
    assert [s.count for s in slices] == [25, 25, 25, 26]
    assert slices[0].bounds == {"collection": "docs", "after": None, "upto": "d0024"}
    assert slices[-1].bounds["upto"] is None
    read = [read_all(src, size=9, bounds=s.bounds) for s in slices]
    assert [len(r) for r in read] == [s.count for s in slices]
    assert [d.id for part in read for d in part] == [d.id for d in docs]
    assert len(src.split(500)) == 101, "at most one slice per document"
    fill("sqlite-vec", "empty", [])
    assert [s.count for s in source("collection:sqlite-vec/empty").split(3)] == [0]


def test_source__a_range_whose_last_id_was_deleted_still_ends_at_its_bound(
    data_dir: Path,
) -> None:
    fill("sqlite-vec", "docs", corpus(20))
    src = source("collection:sqlite-vec/docs")
    first, _ = src.split(2)
    store = store_backend("sqlite-vec").open("docs", DIMS)
    store.delete([first.bounds["upto"]])
    store.close()
    assert [d.id for d in read_all(src, size=4, bounds=first.bounds)] == [
        f"d{i:04d}" for i in range(9)
    ]


def test_source__a_document_with_blank_text_is_a_malformed_record() -> None:
    class OnePage:
        def documents(self, after_id: str | None, limit: int) -> list[Document]:
            return [] if after_id else [Document("ok", "fine"), Document("blank", "  ")]

        def close(self) -> None:
            pass

    reader = CollectionReader(OnePage(), "c", None, None)  # type: ignore[arg-type]
    ok, blank = reader.read_batch(10)
    assert isinstance(ok, Document)
    assert isinstance(blank, Malformed)
    assert blank.reason == "id=blank: 'text' must be a non-empty string"


def test_spec__a_missing_collection_or_store_or_shape_is_a_clear_spec_error(
    data_dir: Path,
) -> None:
    with pytest.raises(SpecError, match=r"collection 'ghost' not found in sqlite-vec \(.*ghost"):
        open_source("collection:sqlite-vec/ghost")
    assert not (data_dir / "stores" / "ghost.sqlite-vec").exists(), "looking created nothing"
    with pytest.raises(SpecError, match="unknown store 'nostore'"):
        open_source("collection:nostore/docs")
    with pytest.raises(SpecError, match="must look like collection:STORE/NAME"):
        open_source("collection:docs")
    with pytest.raises(SpecError, match="must be 1-64 letters"):
        open_source("collection:sqlite-vec/bad name")


def test_spec__a_flaky_store_spec_with_slashes_in_it_still_names_its_collection(
    data_dir: Path,
) -> None:
    fill("sqlite-vec", "docs", corpus(3))
    src = source("collection:flaky(sqlite-vec,poison=a/b)/docs")
    assert src.count() == 3


def test_source__a_collection_dropped_after_the_check_is_unavailable_not_created(
    data_dir: Path,
) -> None:
    fill("sqlite-vec", "docs", corpus(3))
    src = source("collection:sqlite-vec/docs")
    store_backend("sqlite-vec").drop_collection("docs")
    with pytest.raises(SourceUnavailable, match="'docs' not found"):
        src.count()
    assert not (data_dir / "stores" / "docs.sqlite-vec").exists()


def test_refers_to__the_job_own_target_through_aliases(data_dir: Path) -> None:
    fill("sqlite-vec", "docs__1", corpus(2))
    store_backend("sqlite-vec").point_alias("docs", "docs__1")
    assert refers_to("collection:sqlite-vec/docs", "sqlite-vec", "docs__1")
    assert refers_to("collection:sqlite-vec/docs__1", "sqlite-vec", "docs")
    assert refers_to("collection:sqlite-vec/other", "sqlite-vec", "other")
    assert not refers_to("collection:sqlite-vec/docs", "sqlite-vec", "docs_minilm")
    assert not refers_to("jsonl:docs.jsonl", "sqlite-vec", "docs")
