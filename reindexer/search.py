"""`reindex search`: the k nearest documents of a collection to a text, read-side only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reindexer.embedders import open_embedder
from reindexer.errors import SpecError
from reindexer.stores import store_backend
from reindexer.stores.sqlite_vec import SqliteVecBackend

MAX_K = 1000
TEXT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    distance: float
    text: str

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "distance": self.distance, "text": self.text}


def search(
    store: str, collection: str, text: str, *, embedder: str = "hashing", k: int = 10
) -> list[Result]:
    """The `k` nearest documents to `text`, nearest first; raises ReindexerError for an operator.

    Never creates the collection: a missing sqlite-vec file is refused before opening, and any
    store whose collection turns out empty (so missing, or made by this open) is refused too.
    """
    if not 1 <= k <= MAX_K:
        raise SpecError(f"k must be from 1 to {MAX_K}, got {k}")
    if not text.strip():
        raise SpecError("the search text is empty")
    backend = store_backend(store)
    backend.check_collection(collection)
    missing = f"collection {collection!r} in {store} is empty or missing"
    if isinstance(backend, SqliteVecBackend) and not Path(backend.location(collection)).exists():
        raise SpecError(missing)
    model = open_embedder(embedder)
    opened = backend.open(collection, model.dimensions)
    try:
        if opened.count() == 0:
            raise SpecError(missing)
        hits = opened.search(model.embed([text]), k=k)
    finally:
        opened.close()
    return [Result(hit.id, float(hit.distance), hit.text[:TEXT_CHARS]) for hit in hits]
