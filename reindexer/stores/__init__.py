"""Vector stores by spec: `sqlite-vec`, `pgvector`, `milvus`, and `flaky(INNER,...)` around any."""

from __future__ import annotations

from reindexer.backends import NoOptions, Registry
from reindexer.stores.base import Hit, StoreBackend, VectorStore
from reindexer.stores.flaky import FlakyBackend, FlakyOptions
from reindexer.stores.milvus import MilvusBackend, MilvusOptions, milvus_configured
from reindexer.stores.pgvector import PgvectorBackend, PgvectorOptions, pgvector_configured
from reindexer.stores.sqlite_vec import SqliteVecBackend

__all__ = [
    "Hit",
    "VectorStore",
    "StoreBackend",
    "STORES",
    "open_store",
    "store_backend",
    "validate_store",
    "validate_collection",
]

STORES: Registry[StoreBackend] = Registry("store")
STORES.register("sqlite-vec", NoOptions, lambda _: SqliteVecBackend())
STORES.register(
    "pgvector", PgvectorOptions, lambda _: PgvectorBackend(), configured=pgvector_configured
)
STORES.register("milvus", MilvusOptions, lambda _: MilvusBackend(), configured=milvus_configured)
STORES.register(
    "flaky",
    FlakyOptions,
    lambda o: FlakyBackend(store_backend(o.inner), o),
    takes_items=True,
    usage="flaky(INNER,key=value,...)",
)


def store_backend(spec: str) -> StoreBackend:
    """The backend `spec` names, inner stores included; opens nothing. Raises SpecError."""
    return STORES.open(spec)


def validate_store(spec: str) -> None:
    """Raise SpecError unless `spec` names a known store with valid options."""
    store_backend(spec)


def validate_collection(store: str, collection: str) -> None:
    """Raise SpecError unless `collection` is a valid name in the store that `store` names."""
    store_backend(store).check_collection(collection)


def open_store(spec: str, collection: str, dimensions: int) -> VectorStore:
    backend = store_backend(spec)
    backend.check_collection(collection)
    return backend.open(collection, dimensions)
