"""Aliases on every store, real ones: sqlite-vec files, PostgreSQL with pgvector (pgserver),
milvus-lite. Point, re-point, resolve, list, drop, adopt a plain collection, read through.

The swap jobs build on these (DESIGN.md: collection ALIAS is served by ALIAS__<job id>); readers
during a move are tests/integration/test_alias_readers.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.documents import Document
from reindexer.errors import BackendFailed, DimensionMismatch, SpecError
from reindexer.stores import StoreBackend, VectorStore, store_backend
from reindexer.stores.aliases import ALIAS, physical_name
from tests.stores.harnesses import DIMS, OTHER_DIMS, vector_for, vectors_of

SPECS = [
    pytest.param("sqlite-vec", id="sqlite-vec"),
    pytest.param("flaky(sqlite-vec)", id="flaky-sqlite-vec"),
    pytest.param("pgvector", id="pgvector", marks=pytest.mark.backends),
    pytest.param("milvus", id="milvus", marks=pytest.mark.backends),
]


@dataclasses.dataclass
class Stores:
    """One store's backend, and the collections a test made there, dropped at the end."""

    backend: StoreBackend
    opened: list[VectorStore] = dataclasses.field(default_factory=list)

    def alias(self) -> str:
        return f"al_{uuid.uuid4().hex[:10]}"

    def fill(self, name: str, prefix: str, n: int, dims: int = DIMS) -> None:
        """Collection `name` holding `n` documents whose ids start with `prefix`."""
        store = self.backend.open(name, dims)
        try:
            docs = [Document(f"{prefix}-{i:03d}", f"{prefix} text {i}", {"n": i}) for i in range(n)]
            store.upsert(docs, vectors_of(docs) if dims == DIMS else _wide(docs, dims))
        finally:
            store.close()

    def open(self, name: str, dims: int = DIMS) -> VectorStore:
        store = self.backend.open(name, dims)
        self.opened.append(store)
        return store


def _wide(docs: list[Document], dims: int) -> Any:
    import numpy as np

    return np.stack([vector_for(doc.text, dims) for doc in docs])


def configure(settings: Any, spec: str, request: pytest.FixtureRequest) -> None:
    if "pgvector" in spec:
        server = request.getfixturevalue("pgvector_server")
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=server.url)
    elif "milvus" in spec:
        server = request.getfixturevalue("milvus_server")
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=server.url)


@pytest.fixture(params=SPECS)
def stores(request: pytest.FixtureRequest, data_dir: Path, settings: Any) -> Iterator[Stores]:
    configure(settings, request.param, request)
    made = Stores(store_backend(request.param))
    try:
        yield made
    finally:
        for store in made.opened:
            store.close()


def ids_of(store: VectorStore) -> set[str]:
    return set(store.ids())


def test_point__a_new_alias_serves_its_collection_and_reads_go_through_it(stores: Stores) -> None:
    alias = stores.alias()
    stores.fill(f"{alias}__1", "one", 5)
    assert stores.backend.alias_target(alias) is None
    assert not stores.backend.exists(alias)

    assert stores.backend.point_alias(alias, f"{alias}__1") is None
    assert stores.backend.alias_target(alias) == f"{alias}__1"
    assert stores.backend.alias_target(f"{alias}__1") is None, "a physical collection is none"
    assert stores.backend.exists(alias)

    reader = stores.open(alias)
    assert reader.count() == 5
    assert ids_of(reader) == {f"one-{i:03d}" for i in range(5)}
    [hit, *_] = reader.search(vector_for("one text 3"), k=3)
    assert (hit.id, hit.text, hit.metadata) == ("one-003", "one text 3", {"n": 3})


def test_point__again_returns_the_old_collection_and_an_open_reader_follows(
    stores: Stores,
) -> None:
    alias = stores.alias()
    stores.fill(f"{alias}__1", "one", 3)
    stores.fill(f"{alias}__2", "two", 4)
    stores.backend.point_alias(alias, f"{alias}__1")
    reader = stores.open(alias)
    assert reader.count() == 3

    assert stores.backend.point_alias(alias, f"{alias}__2") == f"{alias}__1"
    assert stores.backend.alias_target(alias) == f"{alias}__2"
    assert reader.count() == 4, "the store opened on the alias reads what it serves now"
    assert {hit.id for hit in reader.search(vector_for("two text 1"), k=10)} == {
        f"two-{i:03d}" for i in range(4)
    }
    # And back again: the rollback.
    assert stores.backend.point_alias(alias, f"{alias}__1") == f"{alias}__2"
    assert ids_of(reader) == {f"one-{i:03d}" for i in range(3)}


def test_point__refuses_a_missing_collection_or_an_alias_as_target(stores: Stores) -> None:
    alias = stores.alias()
    with pytest.raises(BackendFailed, match="no such|does not exist") as missing:
        stores.backend.point_alias(alias, f"{alias}__9")
    assert missing.value.cause == ALIAS
    stores.fill(f"{alias}__1", "one", 2)
    stores.backend.point_alias(alias, f"{alias}__1")
    other = stores.alias()
    with pytest.raises(BackendFailed, match="is an alias"):
        stores.backend.point_alias(other, alias)
    with pytest.raises(BackendFailed, match="is an alias"):
        stores.backend.point_alias(alias, alias)
    assert stores.backend.alias_target(other) is None
    assert stores.backend.alias_target(alias) == f"{alias}__1"


def test_physical_collections__lists_the_alias_own_oldest_first(stores: Stores) -> None:
    alias = stores.alias()
    for job_id in (12, 3, 100):
        stores.fill(f"{alias}__{job_id}", f"j{job_id}", 1)
    stores.fill(f"{alias}_x__5", "lookalike", 1)  # another alias's, not this one's
    stores.fill(f"{alias}__tmp", "tmp", 1)  # not a job id
    assert stores.backend.physical_collections(alias) == [
        f"{alias}__3",
        f"{alias}__12",
        f"{alias}__100",
    ]


def test_drop_collection__refuses_the_live_target_and_the_alias_drops_an_old_one(
    stores: Stores,
) -> None:
    alias = stores.alias()
    stores.fill(f"{alias}__1", "one", 2)
    stores.fill(f"{alias}__2", "two", 2)
    stores.backend.point_alias(alias, f"{alias}__1")
    stores.backend.point_alias(alias, f"{alias}__2")

    with pytest.raises(BackendFailed, match="served by the alias") as live:
        stores.backend.drop_collection(f"{alias}__2")
    assert live.value.cause == ALIAS
    with pytest.raises(BackendFailed, match="is an alias"):
        stores.backend.drop_collection(alias)
    assert stores.open(alias).count() == 2, "nothing was dropped"

    assert stores.backend.drop_collection(f"{alias}__1") is True
    assert stores.backend.drop_collection(f"{alias}__1") is False, "idempotent when missing"
    assert stores.backend.physical_collections(alias) == [f"{alias}__2"]
    assert not stores.backend.exists(f"{alias}__1")


def test_point__over_a_plain_collection_keeps_its_data_as_base(stores: Stores) -> None:
    alias = stores.alias()
    stores.fill(alias, "old", 6)  # reindexed in place before: a plain collection
    stores.fill(f"{alias}__7", "new", 2)

    assert stores.backend.point_alias(alias, f"{alias}__7") == f"{alias}__base"
    assert stores.backend.alias_target(alias) == f"{alias}__7"
    assert ids_of(stores.open(alias)) == {"new-000", "new-001"}
    kept = stores.open(f"{alias}__base")
    assert ids_of(kept) == {f"old-{i:03d}" for i in range(6)}
    [hit, *_] = kept.search(vector_for("old text 4"), k=1)
    assert (hit.id, hit.text, hit.metadata) == ("old-004", "old text 4", {"n": 4})
    assert stores.backend.physical_collections(alias) == [f"{alias}__base", f"{alias}__7"]

    # Rolled back, the alias serves the old data again.
    assert stores.backend.point_alias(alias, f"{alias}__base") == f"{alias}__7"
    assert stores.open(alias).count() == 6


def test_open__an_alias_refuses_writes_and_says_which_collection_to_write(stores: Stores) -> None:
    alias = stores.alias()
    stores.fill(f"{alias}__1", "one", 2)
    stores.backend.point_alias(alias, f"{alias}__1")
    through = stores.open(alias)
    docs = [Document("x", "written through the alias")]
    with pytest.raises(BackendFailed, match="is an alias") as refused:
        through.upsert(docs, vectors_of(docs))
    assert refused.value.cause == ALIAS
    assert f"{alias}__1" in str(refused.value)
    with pytest.raises(BackendFailed, match="is an alias"):
        through.delete(["one-000"])
    assert through.count() == 2
    assert through.build_index(lambda _: True) is False


def test_open__an_alias_at_other_dimensions_is_a_dimension_mismatch(stores: Stores) -> None:
    alias = stores.alias()
    stores.fill(f"{alias}__1", "one", 2)
    stores.backend.point_alias(alias, f"{alias}__1")
    with pytest.raises(DimensionMismatch):
        stores.backend.open(alias, OTHER_DIMS)


def test_open_existing__reads_at_the_collection_dimensions_and_creates_nothing(
    stores: Stores,
) -> None:
    alias = stores.alias()
    assert stores.backend.open_existing(alias) is None
    assert not stores.backend.exists(alias), "looking created nothing"
    stores.fill(f"{alias}__1", "wide", 3, dims=OTHER_DIMS)
    stores.backend.point_alias(alias, f"{alias}__1")
    store = stores.backend.open_existing(alias)
    assert store is not None
    stores.opened.append(store)
    assert [doc.id for doc in store.documents(None, 10)] == ["wide-000", "wide-001", "wide-002"]


def test_point__to_a_collection_of_other_dimensions_moves_too(stores: Stores) -> None:
    """The everyday migration: a new model with other dimensions behind the same alias."""
    alias = stores.alias()
    stores.fill(f"{alias}__1", "narrow", 2)
    stores.fill(f"{alias}__2", "wide", 3, dims=OTHER_DIMS)
    stores.backend.point_alias(alias, f"{alias}__1")
    assert stores.backend.point_alias(alias, f"{alias}__2") == f"{alias}__1"
    reader = stores.open(alias, OTHER_DIMS)
    assert reader.count() == 3
    [hit, *_] = reader.search(vector_for("wide text 2", OTHER_DIMS), k=1)
    assert hit.id == "wide-002"


@pytest.mark.parametrize(
    ("spec", "longest"),
    [
        pytest.param("sqlite-vec", 64, id="sqlite-vec"),
        pytest.param("pgvector", 48, id="pgvector", marks=pytest.mark.backends),
        pytest.param("milvus", 255, id="milvus", marks=pytest.mark.backends),
    ],
)
def test_physical_name__fits_the_store_or_says_the_alias_is_too_long(
    spec: str, longest: int, settings: Any, request: pytest.FixtureRequest
) -> None:
    configure(settings, spec, request)
    backend = store_backend(spec)
    suffix = "__123456"
    fits = "a" * (longest - len(suffix))
    assert physical_name(fits, 123456, backend) == fits + suffix
    backend.check_collection(fits + suffix)
    with pytest.raises(SpecError, match="too long for a swap"):
        physical_name(fits + "a", 123456, backend)


def test_physical_name__without_a_store_takes_the_strictest_rule_and_refuses_the_separator() -> (
    None
):
    assert physical_name("docs", 42) == "docs__42"
    with pytest.raises(SpecError, match="too long for a swap"):
        physical_name("d" * 45, 42)
    with pytest.raises(SpecError, match="must not contain '__'"):
        physical_name("my__docs", 1)
