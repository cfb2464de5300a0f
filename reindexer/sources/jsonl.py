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
from reindexer.sources.validation import to_record


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
    def __init__(self, path: Path, checkpoint: Checkpoint) -> None:
        self._seen = SeenIds()
        try:
            self._file: IO[bytes] = path.open("rb")
        except OSError as exc:
            self._seen.close()
            raise SourceUnavailable(f"cannot read {path}: {exc}") from exc
        self._offset = 0
        self._line = 0
        resume_at = int(checkpoint.get("offset", 0))
        # Replay the ids before the checkpoint so duplicates are still caught after a resume.
        for _record in self._records(stop_at=resume_at):
            pass

    def _records(self, stop_at: int | None = None) -> Iterator[Record]:
        for raw in self._file:
            if stop_at is not None and self._offset >= stop_at:
                self._file.seek(self._offset)
                return
            self._offset += len(raw)
            self._line += 1
            if not raw.strip():
                continue
            yield self._parse(raw, f"line {self._line}")

    def _parse(self, raw: bytes, locator: str) -> Record:
        try:
            value: Any = json.loads(raw)
        except UnicodeDecodeError:
            return Malformed(locator, locator, f"{locator}: not valid UTF-8")
        except json.JSONDecodeError as exc:
            return Malformed(locator, locator, f"{locator}: invalid JSON ({exc.msg})")
        return to_record(value, locator, self._seen)

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def checkpoint(self) -> dict[str, Any]:
        return {"offset": self._offset, "line": self._line}

    def close(self) -> None:
        self._file.close()
        self._seen.close()
