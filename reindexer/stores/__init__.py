"""Vector stores by spec: `sqlite-vec`, and `flaky(INNER,...)` around any of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reindexer import conf
from reindexer.errors import UnknownBackend
from reindexer.stores.base import Hit, VectorStore
from reindexer.stores.flaky import FlakyStore, parse_flaky
from reindexer.stores.sqlite_vec import SqliteVecStore, validate_collection

__all__ = ["Hit", "VectorStore", "STORES", "open_store", "validate_store", "validate_collection"]

# name -> factory(data_dir, collection, dimensions)
STORES: dict[str, Callable[[Path, str, int], VectorStore]] = {
    "sqlite-vec": SqliteVecStore.for_collection,
}


def validate_store(spec: str) -> None:
    """Raise SpecError unless `spec` names a known store with valid options."""
    if spec.startswith("flaky("):
        validate_store(parse_flaky(spec).inner)
    elif spec not in STORES:
        known = ", ".join([*STORES, "flaky(INNER,...)"])
        raise UnknownBackend(f"unknown store {spec!r}; known: {known}")


def open_store(
    spec: str, collection: str, dimensions: int, data_dir: Path | None = None
) -> VectorStore:
    validate_store(spec)
    validate_collection(collection)
    data_dir = data_dir or conf.get().data_dir
    if spec.startswith("flaky("):
        options = parse_flaky(spec)
        return FlakyStore(open_store(options.inner, collection, dimensions, data_dir), options)
    return STORES[spec](data_dir, collection, dimensions)
