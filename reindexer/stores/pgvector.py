"""`pgvector`: PostgreSQL with the pgvector extension at REINDEXER_PGVECTOR_URL (stub, issue 9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.errors import SpecError
from reindexer.stores.base import VectorStore

SETTING = "REINDEXER_PGVECTOR_URL"


def pgvector_configured() -> bool:
    return conf.get().pgvector_url is not None


@dataclass(frozen=True, slots=True)
class PgvectorOptions:
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not pgvector_configured():
            raise SpecError(
                f"pgvector store needs the setting {SETTING} (or a PostgreSQL DATABASE_URL)",
                field="store",
            )
        return cls()


class PgvectorBackend:
    def check_collection(self, name: str) -> None:
        raise SpecError("pgvector: not built yet", field="collection")

    def location(self, collection: str) -> str:
        return f"table {collection!r} at {SETTING}"

    def open(self, collection: str, dimensions: int) -> VectorStore:
        raise SpecError("pgvector: not built yet", field="store")
