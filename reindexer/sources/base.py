"""The Protocol every source implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from reindexer.documents import Record

Checkpoint = Mapping[str, Any]


class SourceReader(Protocol):
    """An open stream of records, started at a checkpoint."""

    # Transient read errors retried so far (a source server that blinked); the engine adds them
    # to the job's retries as they grow.
    retries: int

    def __iter__(self) -> Iterator[Record]: ...

    def read_batch(self, size: int) -> list[Record]:
        """The next `size` records, fewer only at the end, none past it (the engine's path)."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """The position just after the last record handed out; resuming there gives the next."""
        ...

    def close(self) -> None: ...


class Source(Protocol):
    spec: str

    def count(self) -> int:
        """How many records the source will yield, the malformed ones included."""
        ...

    def open(self, checkpoint: Checkpoint | None = None) -> SourceReader: ...
