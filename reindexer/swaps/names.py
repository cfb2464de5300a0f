"""Names in swap mode: the physical collection a swap job writes, and what an alias serves."""

from __future__ import annotations

from reindexer.content_hashes import store_identity
from reindexer.models import JobMode, ReindexJob
from reindexer.stores import StoreBackend, store_backend
from reindexer.stores.aliases import physical_name


def build_collection(job: ReindexJob) -> str:
    """The collection `job` writes: its own `ALIAS__<job id>` in swap mode, else its collection.
    A resumed swap job reopens the same one."""
    if job.mode != JobMode.SWAP:
        return job.collection
    return physical_name(job.collection, job.pk, store_backend(job.store))


def serving(backend: StoreBackend, alias: str) -> str | None:
    """What readers of `alias` get now: the collection it serves, the plain collection of that
    name (before its first swap), or None when there is nothing by that name."""
    target = backend.alias_target(alias)
    if target is not None:
        return target
    return alias if backend.exists(alias) else None


def store_key(spec: str) -> str:
    """The store as AliasMove records it: its spec without fault-injecting wrappers."""
    return store_identity(spec)
