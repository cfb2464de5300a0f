"""Sources by spec: `jsonl:PATH` and `directory:PATH`, paths checked against the allowed roots,
`sql:TABLE(...)`, a table of the database at REINDEXER_SQL_SOURCE_URL, and
`collection:STORE/NAME`, the documents of an existing collection of a store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Self

from reindexer import conf
from reindexer.backends import ParsedSpec, Registry
from reindexer.sources.base import Source, SourceReader
from reindexer.sources.collection import CollectionOptions, CollectionSource
from reindexer.sources.directory import DirectorySource
from reindexer.sources.jsonl import JsonlSource
from reindexer.sources.paths import resolve_source_path
from reindexer.sources.sql import SqlOptions, SqlSource

__all__ = ["Source", "SourceReader", "SOURCES", "open_source"]


@dataclass(frozen=True)
class PathOptions:
    """`KIND:PATH`: a path inside the allowed roots (a relative one starts at the first root)."""

    spec: str
    path: Path
    want_dir: ClassVar[bool] = False

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        roots = conf.get().source_roots
        return cls(spec.text, resolve_source_path(spec.arg, roots, want_dir=cls.want_dir))


class FileOptions(PathOptions):
    """`jsonl:PATH`: a file."""


class FolderOptions(PathOptions):
    """`directory:PATH`: a folder."""

    want_dir = True


SOURCES: Registry[Source] = Registry("source", unknown_label="source kind", shape="KIND:PATH")
for _kind, _options, _source_class in (
    ("jsonl", FileOptions, JsonlSource),
    ("directory", FolderOptions, DirectorySource),
):
    SOURCES.register(
        _kind,
        _options,
        partial(lambda cls, o: cls(o.spec, o.path), _source_class),
        takes_arg=True,
        usage=f"{_kind}:PATH",
    )
SOURCES.register(
    "sql",
    SqlOptions,
    SqlSource,
    takes_arg=True,
    takes_items=True,
    usage="sql:TABLE(id=COL,text=COL,metadata=COL)",
    configured=lambda: conf.get().sql_source_url is not None,
)
SOURCES.register(
    "collection",
    CollectionOptions,
    CollectionSource,
    takes_arg=True,
    usage="collection:STORE/NAME",
)


def open_source(spec: str) -> Source:
    """The source that `spec` names; raises SpecError (SourcePathError for a refused path)."""
    return SOURCES.open(spec)
