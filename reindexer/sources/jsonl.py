"""`jsonl:PATH`: one JSON object per line, streamed from a byte offset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reindexer.documents import Malformed, Record
from reindexer.errors import SourceUnavailable
from reindexer.sources.base import Checkpoint
from reindexer.sources.seen import SeenIds
from reindexer.sources.validation import mark_duplicates, to_record

# Lines parsed and checked for duplicates together; small enough to keep memory flat.
CHUNK_LINES = 256


class JsonlSource:
    def __init__(self, spec: str, path: Path) -> None:
        self.spec = spec
        self.path = path

    def count(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc}") from exc

    def open(self, checkpoint: Checkpoint | None = None) -> JsonlReader:
        return JsonlReader(self.path, checkpoint or {})


class JsonlReader:
    """Yields records in file order; `checkpoint()` is the offset after the last one yielded."""

    def __init__(self, path: Path, checkpoint: Checkpoint) -> None:
        self._seen = SeenIds()
        try:
            self._file: IO[bytes] = path.open("rb")
        except OSError as exc:
            self._seen.close()
            raise SourceUnavailable(f"cannot read {path}: {exc}") from exc
        self._read_offset = 0
        self._read_line = 0
        self._position = {"offset": 0, "line": 0}
        resume_at = int(checkpoint.get("offset", 0))
        # Replay the ids before the checkpoint, so duplicates are still caught after a resume.
        for _record in self._records(stop_at=resume_at):
            pass

    def _chunks(self, stop_at: int | None) -> Iterator[list[tuple[Record, int, int]]]:
        """Chunks of (record, offset after it, its line number), duplicates marked."""
        records: list[Record] = []
        locators: list[str] = []
        ends: list[tuple[int, int]] = []
        while True:
            if stop_at is not None and self._read_offset >= stop_at:
                raw = b""
            else:
                raw = self._file.readline()
            if raw:
                self._read_offset += len(raw)
                self._read_line += 1
                if raw.strip():
                    locator = f"line {self._read_line}"
                    records.append(self._parse(raw, locator))
                    locators.append(locator)
                    ends.append((self._read_offset, self._read_line))
            if records and (not raw or len(records) >= CHUNK_LINES):
                marked = mark_duplicates(records, locators, self._seen)
                yield [(r, offset, line) for r, (offset, line) in zip(marked, ends, strict=True)]
                records, locators, ends = [], [], []
            if not raw:
                return

    def _records(self, stop_at: int | None = None) -> Iterator[Record]:
        for chunk in self._chunks(stop_at):
            for record, offset, line in chunk:
                self._position = {"offset": offset, "line": line}
                yield record

    @staticmethod
    def _parse(raw: bytes, locator: str) -> Record:
        try:
            value: Any = json.loads(raw)
        except UnicodeDecodeError:
            return Malformed(locator, locator, f"{locator}: not valid UTF-8")
        except json.JSONDecodeError as exc:
            return Malformed(locator, locator, f"{locator}: invalid JSON ({exc.msg})")
        return to_record(value, locator)

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def checkpoint(self) -> dict[str, Any]:
        return dict(self._position)

    def close(self) -> None:
        self._file.close()
        self._seen.close()
