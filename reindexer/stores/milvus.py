"""`milvus`: a Milvus server at REINDEXER_MILVUS_URI (stub, issue 9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.errors import SpecError
from reindexer.stores.base import VectorStore

SETTING = "REINDEXER_MILVUS_URI"


def milvus_configured() -> bool:
    return conf.get().milvus_uri is not None


@dataclass(frozen=True, slots=True)
class MilvusOptions:
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not milvus_configured():
            raise SpecError(
                f"milvus store needs the setting {SETTING} (the server, e.g. http://127.0.0.1:19530)",
                field="store",
            )
        return cls()


class MilvusBackend:
    def check_collection(self, name: str) -> None:
        raise SpecError("milvus: not built yet", field="collection")

    def location(self, collection: str) -> str:
        return f"collection {collection!r} at {SETTING}"

    def open(self, collection: str, dimensions: int) -> VectorStore:
        raise SpecError("milvus: not built yet", field="store")
