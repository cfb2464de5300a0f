"""The Protocol every source implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from reindexer.documents import Record

Checkpoint = Mapping[str, Any]


class SourceReader(Protocol):
    """An open stream of records, started at a checkpoint."""

    def __iter__(self) -> Iterator[Record]: ...

    def checkpoint(self) -> dict[str, Any]:
        """The position just after the last record yielded; resuming there yields the next one."""
        ...

    def close(self) -> None: ...


class Source(Protocol):
    spec: str

    def count(self) -> int:
        """How many records the source will yield, the malformed ones included."""
        ...

    def open(self, checkpoint: Checkpoint | None = None) -> SourceReader: ...
