"""Embedders by spec. `hashing` now; model-based ones register here later."""

from __future__ import annotations

from collections.abc import Callable

from reindexer.embedders.base import Embedder, Vectors
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.errors import UnknownBackend

__all__ = ["Embedder", "Vectors", "EMBEDDERS", "open_embedder", "validate_embedder"]

EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "hashing": HashingEmbedder,
}


def validate_embedder(spec: str) -> None:
    if spec not in EMBEDDERS:
        raise UnknownBackend(f"unknown embedder {spec!r}; known: {', '.join(EMBEDDERS)}")


def open_embedder(spec: str) -> Embedder:
    validate_embedder(spec)
    return EMBEDDERS[spec]()
