"""Milvus's aliases (`create_alias`, `alter_alias`), as the StoreBackend alias methods use them.

Milvus resolves an alias on each request, and `alter_alias` moves it in one step, so a reader's
search or count runs wholly on the old collection or the new. The target is loaded before the
move, so the first request after it needs no load.

A plain collection cannot become an alias in one step: an alias may not share a collection's
name. It is renamed to `A__base` (`rename_collection`, which milvus-lite 3.2 supports; the
renamed collection comes back released) and the alias is created right after, pointing at the new
target; `A__base` is loaded last, as nothing reads it until a rollback. Between the rename and
the alias, a few milliseconds, the name `A` is nothing: readers opened on it then retry
(MilvusStore's reads wait up to READ_RETRY_SECONDS for a collection that is not found).

Milvus Lite lets a collection be dropped while an alias serves it (the alias goes with it), so
`drop` refuses that itself. Milvus has no lock to hold across calls: two movers of one alias at
once must be kept apart by their caller (the swap job holds its collection).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from reindexer.stores import aliases
from reindexer.stores.milvus_errors import COLLECTION_NOT_FOUND

if TYPE_CHECKING:
    from pymilvus import MilvusClient  # type: ignore[import-untyped]

TIMEOUT_SECONDS = 60.0
# After a rename, Milvus may still see the old name as a collection for a moment (its metadata
# cache, slower under load): the alias of that name is retried this long.
RENAMED_SETTLE_SECONDS = 10.0


def _is_missing(exc: Exception) -> bool:
    message = str(getattr(exc, "message", "") or exc).lower()
    return getattr(exc, "code", None) == COLLECTION_NOT_FOUND or "does not exist" in message


def target(client: MilvusClient, alias: str) -> str | None:
    """The collection `alias` serves; None when it is not an alias (a collection, or nothing)."""
    try:
        described: dict[str, Any] = client.describe_alias(alias, timeout=TIMEOUT_SECONDS)
    except Exception as exc:
        if type(exc).__module__.startswith("pymilvus") and _is_missing(exc):
            return None
        raise
    name = described.get("collection_name")
    return str(name) if name else None


def _load(client: MilvusClient, name: str) -> None:
    state = client.get_load_state(name, timeout=TIMEOUT_SECONDS)
    if getattr(state.get("state"), "name", "") != "Loaded":
        client.load_collection(name, timeout=TIMEOUT_SECONDS)


def point(client: MilvusClient, alias: str, collection: str) -> str | None:
    if collection == alias or target(client, collection) is not None:
        raise aliases.not_a_collection(alias, collection, "it is an alias")
    if not client.has_collection(collection, timeout=TIMEOUT_SECONDS):
        raise aliases.not_a_collection(alias, collection, "there is no such collection")
    client.flush(collection, timeout=TIMEOUT_SECONDS)
    _load(client, collection)
    previous = target(client, alias)
    if previous is not None:
        client.alter_alias(collection, alias, timeout=TIMEOUT_SECONDS)
        return previous
    if not client.has_collection(alias, timeout=TIMEOUT_SECONDS):
        client.create_alias(collection, alias, timeout=TIMEOUT_SECONDS)
        return None
    base = aliases.base_name(alias)
    if client.has_collection(base, timeout=TIMEOUT_SECONDS):
        raise aliases.not_a_collection(
            alias, collection, f"{alias!r} is a collection, and {base!r}, where it would be kept,"
            " exists already",
        )  # fmt: skip
    client.flush(alias, timeout=TIMEOUT_SECONDS)
    client.rename_collection(alias, base, timeout=TIMEOUT_SECONDS)
    _create_alias_once_renamed(client, collection, alias)
    _load(client, base)
    return base


def _create_alias_once_renamed(client: MilvusClient, collection: str, alias: str) -> None:
    deadline = time.monotonic() + RENAMED_SETTLE_SECONDS
    while True:
        try:
            client.create_alias(collection, alias, timeout=TIMEOUT_SECONDS)
            return
        except Exception as exc:
            conflict = "conflicts with an existing collection" in str(exc).lower()
            if not conflict or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def drop(client: MilvusClient, name: str) -> bool:
    served = target(client, name)
    if served is not None:
        raise aliases.refuse_drop_alias(name, served)
    if not client.has_collection(name, timeout=TIMEOUT_SECONDS):
        return False
    listed: dict[str, Any] = client.list_aliases(name, timeout=TIMEOUT_SECONDS)
    serving = [str(a) for a in listed.get("aliases") or []]
    if serving:
        raise aliases.refuse_drop_target(name, serving)
    client.drop_collection(name, timeout=TIMEOUT_SECONDS)
    return True
