"""`reindex search`: the k nearest documents of a collection to a text, read-side only."""

from __future__ import annotations

from dataclasses import dataclass

from reindexer.embedders import open_embedder
from reindexer.errors import ReindexerError, SpecError, describe_fault
from reindexer.stores import store_backend

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

    Never creates the collection: a missing one is refused before opening, an empty one too.
    """
    if not 1 <= k <= MAX_K:
        raise SpecError(f"k must be from 1 to {MAX_K}, got {k}")
    if not text.strip():
        raise SpecError("the search text is empty")
    backend = store_backend(store)
    backend.check_collection(collection)
    try:
        if not backend.exists(collection):
            raise SpecError(f"collection {collection!r} in {store} does not exist")
        model = open_embedder(embedder)
        opened = backend.open(collection, model.dimensions)
        try:
            if opened.count() == 0:
                raise SpecError(f"collection {collection!r} in {store} is empty")
            hits = opened.search(model.embed([text]), k=k)
        finally:
            opened.close()
    except ReindexerError:
        raise
    except Exception as exc:
        # A driver's error (the server is down...): one line for the operator, not a traceback.
        raise ReindexerError(
            f"cannot search {backend.location(collection)}: {describe_fault(exc)}"
        ) from exc
    return [Result(hit.id, float(hit.distance), hit.text[:TEXT_CHARS]) for hit in hits]
