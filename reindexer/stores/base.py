"""The Protocol every vector store implements."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reindexer.documents import Document
from reindexer.embedders import Vectors


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    distance: float
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IndexProgress:
    """How far a store's index build has got: `done` of `total` (in the store's own unit: blocks,
    tuples...), and what it is doing now, as the store reports it."""

    done: int | None = None
    total: int | None = None
    detail: str = ""


# Called by a store while it builds its index, about once a second; returning False asks the
# store to abandon the build (the job was cancelled, the worker is stopping).
IndexReport = Callable[[IndexProgress], bool]


class IndexBuildAborted(Exception):
    """The build was abandoned because its IndexReport returned False; nothing is half-built."""


class VectorStore(Protocol):
    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        """Write the documents; idempotent by id, so a re-upsert leaves one row per id."""
        ...

    def delete(self, ids: Iterable[str]) -> int:
        """Remove these ids; returns how many rows went."""
        ...

    def count(self) -> int: ...

    def ids(self) -> Iterator[str]:
        """Every stored id, one per row (so a duplicate shows up twice)."""
        ...

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        """The k nearest documents by cosine distance, nearest first."""
        ...

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        """Up to `limit` stored documents (id, text, metadata) in the store's own id order,
        starting after `after_id` (from the first when None): one keyset page, for sources that
        read a collection back (`collection:STORE/NAME`)."""
        ...

    def build_index(self, report: IndexReport) -> bool:
        """Build the collection's search index if the store has one to build and it is missing,
        reporting progress through `report`; return whether it built one.

        Stores that index as they write (sqlite-vec searches exactly, Milvus at insert) return
        False at once. Raises IndexBuildAborted when `report` returned False.
        """
        ...

    def close(self) -> None: ...


class StoreBackend(Protocol):
    """A store as a spec names it: the rule for its collection names, and a way to open one.

    Building one opens no connection and touches no file; `open` does.
    """

    def check_collection(self, name: str) -> None:
        """Raise SpecError unless `name` is a valid collection name for this store."""
        ...

    def location(self, collection: str) -> str:
        """Where `collection` lives, for an operator reading an error (a file, a table...)."""
        ...

    def exists(self, collection: str) -> bool:
        """Whether `collection` is there; may connect, but creates nothing (`reindex search`)."""
        ...

    def open(self, collection: str, dimensions: int) -> VectorStore:
        """Open `collection`, creating it for vectors of `dimensions` if it does not exist.

        Raises DimensionMismatch (before anything is written) when it exists with other
        dimensions. When `collection` is an alias, the store reads through it (following it when
        it moves) and refuses to write (BackendFailed, cause ALIAS): writes go to a physical
        collection by name.
        """
        ...

    def open_existing(self, collection: str) -> VectorStore | None:
        """Open `collection` (or the alias) at the dimensions it was made with, to read it back;
        None when it is not there. Creates nothing."""
        ...

    # Aliases (blue/green swaps): `alias` served by a physical collection `alias__<suffix>`.

    def alias_target(self, alias: str) -> str | None:
        """The physical collection `alias` serves; None when `alias` is not an alias."""
        ...

    def point_alias(self, alias: str, collection: str) -> str | None:
        """Make `alias` serve `collection`, atomically for its readers; return the collection it
        served before (None if it is new).

        When `alias` is a plain collection (reindexed in place before), it is first moved to
        `alias__base`, which then counts as what it served before, so nothing is lost.
        """
        ...

    def drop_collection(self, name: str) -> bool:
        """Drop the physical collection `name`; False when it was not there. Refused
        (BackendFailed, cause ALIAS) for an alias, and for the collection an alias serves."""
        ...

    def physical_collections(self, alias: str) -> list[str]:
        """The physical collections `alias__<job id>` (and `alias__base`) that exist, oldest
        first, for rollback and prune."""
        ...
