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
        self._position = (0, 0)  # (byte offset, line number) after the last record yielded
        resume_at = int(checkpoint.get("offset", 0))
        # Replay the ids before the checkpoint, so duplicates are still caught after a resume.
        for _record in self._records(stop_at=resume_at):
            pass

    def _chunks(self, stop_at: int | None) -> Iterator[tuple[list[Record], list[tuple[int, int]]]]:
        """Chunks of records, duplicates marked, with the (offset, line) just after each one.

        This is the per-document hot path of a job: locators are only spelled out for failures.
        """
        readline = self._file.readline
        records: list[Record] = []
        ends: list[tuple[int, int]] = []
        while True:
            raw = b"" if stop_at is not None and self._read_offset >= stop_at else readline()
            if raw:
                self._read_offset += len(raw)
                self._read_line += 1
                if not raw.isspace():
                    records.append(self._parse(raw, self._read_line))
                    ends.append((self._read_offset, self._read_line))
            if records and (not raw or len(records) >= CHUNK_LINES):
                yield mark_duplicates(records, [line for _, line in ends], self._seen), ends
                records, ends = [], []
            if not raw:
                return

    def _records(self, stop_at: int | None = None) -> Iterator[Record]:
        for records, ends in self._chunks(stop_at):
            for record, end in zip(records, ends, strict=True):
                self._position = end
                yield record

    @staticmethod
    def _parse(raw: bytes, line: int) -> Record:
        try:
            value: Any = json.loads(raw)
        except UnicodeDecodeError:
            locator = f"line {line}"
            return Malformed(locator, locator, f"{locator}: not valid UTF-8")
        except json.JSONDecodeError as exc:
            locator = f"line {line}"
            return Malformed(locator, locator, f"{locator}: invalid JSON ({exc.msg})")
        return to_record(value, line)

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def checkpoint(self) -> dict[str, Any]:
        offset, line = self._position
        return {"offset": offset, "line": line}

    def close(self) -> None:
        self._file.close()
        self._seen.close()
