"""Aliases for blue/green swaps: collection `ALIAS` served by a physical `ALIAS__<job id>`.

Each store keeps its aliases its own way (sqlite-vec: a table in `stores/aliases.sqlite3`;
pgvector: a view; Milvus: its own aliases), behind the same StoreBackend methods. What they share
lives here: the physical names, and the read-only face an alias shows when it is opened, so a
job that names an alias as its collection cannot write through it by accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import BackendFailed, SpecError
from reindexer.stores.base import Hit, IndexReport, VectorStore

if TYPE_CHECKING:
    from reindexer.stores.base import StoreBackend

# BackendFailed's cause for what an alias refuses (a write through it, dropping its target).
ALIAS = "alias"
SEPARATOR = "__"
# The physical collection a plain collection is moved to when it first becomes an alias.
BASE = "base"
# The shortest collection-name limit of the stores (pgvector: 48, so its index name fits 63
# bytes), used when no store is named.
SHORTEST_NAME_LIMIT = 48
_SUFFIX = re.compile(r"(?:0|[1-9][0-9]*|base)")


def physical_name(alias: str, job_id: int | str, backend: StoreBackend | None = None) -> str:
    """`ALIAS__<job id>`, the collection a swap job builds; SpecError when the alias is too long
    to take the suffix (for `backend`'s naming rule, else for the strictest store's)."""
    name = f"{alias}{SEPARATOR}{job_id}"
    if SEPARATOR in alias:
        raise SpecError(
            f"alias {alias!r} must not contain {SEPARATOR!r}: it separates an alias from the"
            " job id in the names of its physical collections",
            field="collection",
        )
    if backend is None:
        if len(name.encode()) > SHORTEST_NAME_LIMIT:
            raise SpecError(_too_long(alias, name, f"{SHORTEST_NAME_LIMIT} bytes"))
        return name
    try:
        backend.check_collection(name)
    except SpecError as exc:
        raise SpecError(_too_long(alias, name, f"this store's rule: {exc}")) from exc
    return name


def _too_long(alias: str, name: str, limit: str) -> str:
    return (
        f"alias {alias!r} is too long for a swap: its physical collection {name!r} would exceed"
        f" {limit}; choose a shorter collection name"
    )


def base_name(alias: str) -> str:
    return f"{alias}{SEPARATOR}{BASE}"


def is_physical_of(alias: str, name: str) -> bool:
    """Whether `name` is one of `alias`'s physical collections (`alias__12`, `alias__base`)."""
    prefix = alias + SEPARATOR
    return name.startswith(prefix) and _SUFFIX.fullmatch(name[len(prefix) :]) is not None


def physical_order(alias: str, names: Iterable[str]) -> list[str]:
    """`alias`'s physical collections among `names`, oldest first: the base, then by job id."""

    def age(name: str) -> tuple[int, int]:
        suffix = name[len(alias) + len(SEPARATOR) :]
        return (-1, 0) if suffix == BASE else (0, int(suffix))

    return sorted((n for n in names if is_physical_of(alias, n)), key=age)


def refuse_write(alias: str, target: str | None) -> BackendFailed:
    serving = f" (serving {target!r})" if target else ""
    return BackendFailed(
        f"collection {alias!r} is an alias{serving}: a job writes into a physical collection"
        " by name (a swap job builds its own); reads through the alias follow it",
        cause=ALIAS,
    )


def refuse_drop_target(name: str, aliases: Sequence[str]) -> BackendFailed:
    return BackendFailed(
        f"collection {name!r} is served by the alias {', '.join(map(repr, aliases))}: point the"
        " alias elsewhere (rollback, or another swap) before dropping it",
        cause=ALIAS,
    )


def refuse_drop_alias(name: str, target: str | None) -> BackendFailed:
    return BackendFailed(
        f"{name!r} is an alias (serving {target!r}), not a physical collection: drop one of"
        " its physical collections instead",
        cause=ALIAS,
    )


def not_a_collection(alias: str, collection: str, why: str) -> BackendFailed:
    return BackendFailed(f"cannot point alias {alias!r} at {collection!r}: {why}", cause=ALIAS)


class AliasReader:
    """The store an alias opens as: every read goes through `reader` (which follows the alias
    as it moves), and writes are refused, so nothing is written through an alias silently."""

    def __init__(self, alias: str, reader: VectorStore, target: str | None) -> None:
        self.alias = alias
        self.reader = reader
        self.target = target

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        raise refuse_write(self.alias, self.target)

    def delete(self, ids: Iterable[str]) -> int:
        raise refuse_write(self.alias, self.target)

    def count(self) -> int:
        return self.reader.count()

    def ids(self) -> Iterator[str]:
        return self.reader.ids()

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        return self.reader.documents(after_id, limit)

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        return self.reader.search(vector, k)

    def build_index(self, report: IndexReport) -> bool:
        return False  # the physical collection's job built its index

    def close(self) -> None:
        self.reader.close()
