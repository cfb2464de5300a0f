"""Sources by spec: `jsonl:PATH` and `directory:PATH`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reindexer import conf
from reindexer.errors import SpecError, UnknownBackend
from reindexer.sources.base import Source, SourceReader
from reindexer.sources.directory import DirectorySource
from reindexer.sources.jsonl import JsonlSource
from reindexer.sources.paths import resolve_source_path

__all__ = ["Source", "SourceReader", "open_source", "SOURCE_KINDS"]


def _jsonl(spec: str, path: Path) -> Source:
    return JsonlSource(spec, path)


def _directory(spec: str, path: Path) -> Source:
    return DirectorySource(spec, path)


# kind -> (whether the path is a folder, factory)
SOURCE_KINDS: dict[str, tuple[bool, Callable[[str, Path], Source]]] = {
    "jsonl": (False, _jsonl),
    "directory": (True, _directory),
}


def open_source(spec: str, roots: tuple[Path, ...] | None = None) -> Source:
    """The source that `spec` names, with its path checked against the allowed roots."""
    kind, sep, raw_path = spec.partition(":")
    if not sep:
        raise SpecError(
            f"source {spec!r} must look like KIND:PATH (kinds: {', '.join(SOURCE_KINDS)})"
        )
    if kind not in SOURCE_KINDS:
        raise UnknownBackend(f"unknown source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}")
    want_dir, factory = SOURCE_KINDS[kind]
    path = resolve_source_path(raw_path, roots or conf.get().source_roots, want_dir=want_dir)
    return factory(spec, path)
