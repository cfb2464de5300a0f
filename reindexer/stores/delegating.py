"""Wrappers around a real store that change one or two calls and pass the rest through.

Subclasses (`flaky(...)`, the tests' crash and recording stores) override only what they change,
so a method added to the VectorStore or StoreBackend protocol is forwarded in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.stores.base import Hit, IndexReport, StoreBackend, VectorStore


class DelegatingStore:
    """Forwards every VectorStore call to `inner`."""

    inner: VectorStore

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        self.inner.upsert(docs, vectors)

    def delete(self, ids: Iterable[str]) -> int:
        return self.inner.delete(ids)

    def count(self) -> int:
        return self.inner.count()

    def ids(self) -> Iterator[str]:
        return self.inner.ids()

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        return self.inner.search(vector, k)

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        return self.inner.documents(after_id, limit)

    def build_index(self, report: IndexReport) -> bool:
        return self.inner.build_index(report)

    def close(self) -> None:
        self.inner.close()


class DelegatingBackend:
    """Forwards every StoreBackend call to `inner`; stores open unwrapped unless a subclass
    overrides `open` (and `open_existing`)."""

    inner: StoreBackend

    def __init__(self, inner: StoreBackend) -> None:
        self.inner = inner

    def check_collection(self, name: str) -> None:
        self.inner.check_collection(name)

    def location(self, collection: str) -> str:
        return self.inner.location(collection)

    def exists(self, collection: str) -> bool:
        return self.inner.exists(collection)

    def open(self, collection: str, dimensions: int) -> VectorStore:
        return self.inner.open(collection, dimensions)

    def open_existing(self, collection: str) -> VectorStore | None:
        return self.inner.open_existing(collection)

    def alias_target(self, alias: str) -> str | None:
        return self.inner.alias_target(alias)

    def point_alias(self, alias: str, collection: str) -> str | None:
        return self.inner.point_alias(alias, collection)

    def drop_collection(self, name: str) -> bool:
        return self.inner.drop_collection(name)

    def physical_collections(self, alias: str) -> list[str]:
        return self.inner.physical_collections(alias)
