"""`collection:STORE/NAME`: the documents (id, text, metadata) of an existing collection or alias
of the store STORE, read back in the store's id order, a page at a time.

The everyday migration: re-embed a collection with a new model into a new collection (and, in
swap mode, move its alias). An alias is resolved once, when the job counts or splits its source,
and the physical collection it served then goes into every checkpoint and slice bound, so a job
reads one collection from start to end even if the alias moves meanwhile (its own swap, say).

The checkpoint is the last id handed out; a resume reads the ids after it. A sliced job reads id
ranges `after < id <= upto`, cut where the store's own order puts them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

from reindexer.backends import ParsedSpec
from reindexer.documents import Document, Malformed, Record
from reindexer.errors import SourceUnavailable, SpecError, is_transient
from reindexer.sources.base import Bounds, Checkpoint, SourceSlice
from reindexer.stores import StoreBackend, VectorStore, store_backend

logger = logging.getLogger(__name__)

KIND = "collection"
# Documents per page when iterating (verify, split); the engine's pages are its batch size.
PAGE_DOCS = 500


def parse_spec_arg(arg: str) -> tuple[str, str]:
    """`STORE/NAME` as (store spec, collection name). A store spec may hold '/' (a poisoned id of
    a flaky store), a collection name never does: the name is after the last '/'."""
    store, sep, name = arg.rpartition("/")
    if not sep or not store or not name:
        raise SpecError(
            f"source '{KIND}:{arg}' must look like {KIND}:STORE/NAME (e.g. {KIND}:sqlite-vec/docs)",
            field="source",
        )
    return store, name


@dataclass(frozen=True)
class CollectionOptions:
    spec: str
    store: str
    collection: str

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        store, name = parse_spec_arg(spec.arg)
        try:
            backend = store_backend(store)
            backend.check_collection(name)
        except SpecError as exc:
            raise SpecError(f"source {spec.text!r}: {exc}", field="source") from exc
        options = cls(spec.text, store, name)
        options._check_exists(backend)
        return options

    def _check_exists(self, backend: StoreBackend) -> None:
        """Refuse a missing collection. A store that cannot be reached now is not refused: that
        is transient, and the job retries it when it runs."""
        try:
            found = backend.exists(self.collection)
        except Exception as exc:
            if is_transient(exc):
                logger.warning("collection source: cannot check %s now: %s", self.spec, exc)
                return
            raise SpecError(f"source {self.spec!r}: {exc}", field="source") from exc
        if not found:
            raise SpecError(
                f"collection {self.collection!r} not found in {self.store}"
                f" ({backend.location(self.collection)})",
                field="source",
            )


def refers_to(source: str, store: str, collection: str) -> bool:
    """Whether the source spec `source` reads the collection a job writes (`store`,
    `collection`), aliases resolved: a job must not read the collection it writes."""
    if not source.startswith(f"{KIND}:"):
        return False
    source_store, name = parse_spec_arg(source[len(KIND) + 1 :])
    if source_store != store:
        return False
    backend = store_backend(store)
    return _physical(backend, name) == _physical(backend, collection)


def _physical(backend: StoreBackend, name: str) -> str:
    return backend.alias_target(name) or name


class CollectionSource:
    def __init__(self, options: CollectionOptions) -> None:
        self.spec = options.spec
        self.options = options
        self._backend = store_backend(options.store)

    def _open_store(self, physical: str | None = None) -> tuple[str, VectorStore]:
        """The collection to read: `physical` (from a checkpoint or bound), else what the
        source's name serves now."""
        name = physical or _physical(self._backend, self.options.collection)
        try:
            store = self._backend.open_existing(name)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise SourceUnavailable(f"cannot read {self.spec}: {exc}") from exc
        if store is None:
            raise SourceUnavailable(
                f"collection {name!r} not found in {self.options.store}"
                f" ({self._backend.location(name)})"
            )
        return name, store

    def count(self) -> int:
        _, store = self._open_store()
        try:
            return store.count()
        finally:
            store.close()

    def split(self, slices: int) -> list[SourceSlice]:
        """Id ranges of nearly equal counts, cut at the ids of one pass over the collection."""
        name, store = self._open_store()
        try:
            total = store.count()
            parts = max(1, min(slices, total))
            starts_at = {total * k // parts for k in range(1, parts)}
            cuts: list[str] = []  # the last id of every slice but the last
            for position, doc in enumerate(_documents(store, None), start=1):
                if position in starts_at:
                    cuts.append(doc.id)
        finally:
            store.close()
        afters: list[str | None] = [None, *cuts]
        uptos: list[str | None] = [*cuts, None]
        edges = [0, *sorted(starts_at), total]
        counts = [b - a for a, b in itertools.pairwise(edges)]
        return [
            SourceSlice({"collection": name, "after": after, "upto": upto}, count)
            for after, upto, count in zip(afters, uptos, counts, strict=True)
        ]

    def open(
        self, checkpoint: Checkpoint | None = None, *, bounds: Bounds | None = None
    ) -> CollectionReader:
        position = dict(checkpoint or {})
        physical = position.get("collection") or (bounds or {}).get("collection")
        name, store = self._open_store(physical)
        after = position.get("last_id", (bounds or {}).get("after"))
        return CollectionReader(store, name, after, (bounds or {}).get("upto"))


def _documents(store: VectorStore, after: str | None, page: int = PAGE_DOCS) -> Iterator[Document]:
    while docs := store.documents(after, page):
        yield from docs
        if len(docs) < page:
            return
        after = docs[-1].id


def _record(doc: Document) -> Record:
    """The document as read, or a Malformed when the store holds one no job could write."""
    locator = f"id={doc.id}"
    if not doc.text or doc.text.isspace():
        reason = f"{locator}: 'text' must be a non-empty string"
        return Malformed(f"{doc.id} ({locator})", locator, reason)
    return Document(doc.id, doc.text, doc.metadata, locator)


class CollectionReader:
    """Hands out a collection's documents in id order, up to `upto` (inclusive) when it reads
    one range of a sliced job."""

    retries = 0  # a store's own reads retry what they can (pgvector reconnects once)

    def __init__(
        self, store: VectorStore, collection: str, after: str | None, upto: str | None
    ) -> None:
        self._store = store
        self._collection = collection
        self._last = after
        self._upto = upto
        self._done = False

    def read_batch(self, size: int) -> list[Record]:
        if self._done:
            return []
        docs = self._store.documents(self._last, max(1, size))
        if len(docs) < size:
            self._done = True
        if self._upto is not None and docs:
            docs = self._within_bounds(docs)
        if docs:
            self._last = docs[-1].id
        return [_record(doc) for doc in docs]

    def _within_bounds(self, docs: list[Document]) -> list[Document]:
        """The page up to `upto`, the last id of this range, which ends the range. The cut is
        found by id, in the store's own order; only when `upto` has been deleted since the split
        does Python's order of strings (the same as sqlite-vec's and Milvus's) place it."""
        ids = [doc.id for doc in docs]
        upto = str(self._upto)
        if upto in ids:
            self._done = True
            return docs[: ids.index(upto) + 1]
        if ids[-1] > upto:
            self._done = True
            return [doc for doc in docs if doc.id <= upto]
        return docs

    def __iter__(self) -> Iterator[Record]:
        while records := self.read_batch(PAGE_DOCS):
            yield from records

    def checkpoint(self) -> dict[str, Any]:
        return {"collection": self._collection, "last_id": self._last}

    def close(self) -> None:
        self._store.close()
