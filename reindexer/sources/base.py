"""The Protocol every source implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


# A range of a source, as JSON, that `Source.open(bounds=...)` restricts a reader to.
Bounds = Mapping[str, Any]


@dataclass(frozen=True)
class SourceSlice:
    """One range of a split source: its `bounds` (JSON) and the records in it."""

    bounds: dict[str, Any]
    count: int


class Source(Protocol):
    spec: str

    def count(self) -> int:
        """How many records the source will yield, the malformed ones included."""
        ...

    def split(self, slices: int) -> list[SourceSlice]:
        """The source cut into at most `slices` consecutive ranges that together hold every
        record once, in source order (fewer when it holds fewer records; one when empty)."""
        ...

    def open(
        self, checkpoint: Checkpoint | None = None, *, bounds: Bounds | None = None
    ) -> SourceReader:
        """A reader from `checkpoint`, or from the start of `bounds` (or of the source), that
        ends at the end of `bounds` (or of the source)."""
        ...
