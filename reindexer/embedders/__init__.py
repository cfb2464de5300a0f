"""Embedders by spec: `hashing` now; model-based ones register here too."""

from __future__ import annotations

from reindexer.backends import NoOptions, Registry
from reindexer.embedders.base import Embedder, Vectors
from reindexer.embedders.hashing import HashingEmbedder

__all__ = ["Embedder", "Vectors", "EMBEDDERS", "open_embedder", "validate_embedder"]

EMBEDDERS: Registry[Embedder] = Registry("embedder")
EMBEDDERS.register("hashing", NoOptions, lambda _: HashingEmbedder())


def validate_embedder(spec: str) -> None:
    """Raise SpecError unless `spec` names a known embedder with valid options."""
    EMBEDDERS.resolve(spec)


def open_embedder(spec: str) -> Embedder:
    return EMBEDDERS.open(spec)
