"""`jsonl:PATH`: one JSON object per line, streamed from a byte offset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from reindexer.documents import Malformed, Record
from reindexer.errors import SourcePathError, SourceUnavailable
from reindexer.sources.base import Bounds, Checkpoint, SourceSlice
from reindexer.sources.paths import open_source_file
from reindexer.sources.seen import SeenIds
from reindexer.sources.validation import line_locator, line_start, mark_duplicates, to_record

# Lines parsed and checked for duplicates together; small enough to keep memory flat.
CHUNK_LINES = 256


class JsonlSource:
    def __init__(self, spec: str, path: Path) -> None:
        self.spec = spec
        self.path = path

    def count(self) -> int:
        try:
            with open_source_file(self.path) as f:
                return sum(1 for line in f if line.strip())
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc}") from exc

    def split(self, slices: int) -> list[SourceSlice]:
        """Byte ranges cut at line boundaries, holding as equal shares of the records as the
        lines allow. Two passes over the file (count, then cut), so memory stays flat."""
        total = self.count()
        parts = max(1, min(slices, total))
        # The record count at which each slice after the first starts.
        starts_at = [total * k // parts for k in range(1, parts)]
        cuts: list[tuple[int, int]] = [(0, 0)]  # (offset, line) where each slice starts
        try:
            with open_source_file(self.path) as f:
                offset = records = 0
                for line, raw in enumerate(f):
                    if not raw.isspace():
                        if len(cuts) <= len(starts_at) and records == starts_at[len(cuts) - 1]:
                            cuts.append((offset, line))
                        records += 1
                    offset += len(raw)
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc}") from exc
        if len(cuts) != parts:
            raise SourceUnavailable(f"{self.path} changed while it was being split into slices")
        # The last slice reads to the end of the file, lines appended since the split included.
        ends: list[int | None] = [start for start, _ in cuts[1:]] + [None]
        counts = [b - a for a, b in zip([0, *starts_at], [*starts_at, total], strict=True)]
        return [
            SourceSlice({"start": {"offset": o, "line": n}, "end": e}, count)
            for (o, n), e, count in zip(cuts, ends, counts, strict=True)
        ]

    def open(
        self, checkpoint: Checkpoint | None = None, *, bounds: Bounds | None = None
    ) -> JsonlReader:
        return JsonlReader(self.path, checkpoint or (bounds or {}).get("start") or {}, bounds)


class JsonlReader:
    """Reads records in file order; `checkpoint()` is the offset after the last one handed out."""

    retries = 0  # a local file is never retried

    def __init__(self, path: Path, checkpoint: Checkpoint, bounds: Bounds | None = None) -> None:
        # A slice ends before the first line that starts at or past `end`.
        end = bounds.get("end") if bounds else None
        self._end: int | None = int(end) if end is not None else None
        self._seen = SeenIds()
        try:
            self._file: IO[bytes] = open_source_file(path)
        except OSError as exc:
            self._seen.close()
            raise SourceUnavailable(f"cannot read {path}: {exc}") from exc
        except SourcePathError:  # a hard link, or a file swapped in since the path was checked
            self._seen.close()
            raise
        self._read_offset = 0
        self._read_line = 0
        resume_at = int(checkpoint.get("offset", 0))
        # Replay the ids before the checkpoint, so duplicates are still caught after a resume,
        # and in a slice the ids of the slices before it, as one reader of the file would.
        end, self._end = self._end, None
        while self._read_offset < resume_at and self._read_chunk(CHUNK_LINES, stop_at=resume_at)[0]:
            pass
        self._end = end
        self._position = (self._read_offset, self._read_line)

    def _read_chunk(
        self, size: int, stop_at: int | None = None
    ) -> tuple[list[Record], list[int], list[int]]:
        """Up to `size` records, duplicates marked, with the offset and line number after each.

        This is the per-document hot path of a job: plain lists, and a document's locator is one
        short f-string.
        """
        records: list[Record] = []
        offsets: list[int] = []
        lines: list[int] = []
        offset, line = self._read_offset, self._read_line
        parse = self._parse
        end = self._end
        if end is not None and offset >= end:
            return [], [], []
        for raw in self._file:
            if end is not None and offset >= end:
                # The first line of the next slice: this slice has ended.
                self._end = offset
                break
            offset += len(raw)
            line += 1
            if not raw.isspace():
                records.append(parse(raw, line))
                offsets.append(offset)
                lines.append(line)
                if len(records) >= size:
                    break
            if stop_at is not None and offset >= stop_at:
                break
        self._read_offset, self._read_line = offset, line
        return mark_duplicates(records, lines, self._seen), offsets, lines

    def read_batch(self, size: int) -> list[Record]:
        records, offsets, lines = self._read_chunk(size)
        if records:
            self._position = (offsets[-1], lines[-1])
        else:  # the end: past any trailing blank lines
            self._position = (self._read_offset, self._read_line)
        return records

    def __iter__(self) -> Iterator[Record]:
        while True:
            records, offsets, lines = self._read_chunk(CHUNK_LINES)
            if not records:
                return
            for record, offset, line in zip(records, offsets, lines, strict=True):
                self._position = (offset, line)
                yield record

    @staticmethod
    def _parse(raw: bytes, line: int) -> Record:
        # orjson reads the well-formed lines (most of them) straight from bytes, several times
        # faster; whatever it refuses (bad UTF-8 or JSON, a byte-order mark, NaN, a huge int)
        # goes the standard library's way below, which decides, with its own messages.
        try:
            fast: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            record = to_record(fast, line)
            if isinstance(record, Malformed):  # its failure shows the start of the line
                return to_record(fast, line, raw.decode("utf-8", "replace"))
            return record
        try:
            # Decoding first skips json's own encoding sniffing, a Python-level cost per line;
            # a byte-order mark can only open the file.
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError:
            locator = line_locator(line)
            shown = line_start(raw.decode("utf-8", "replace"))
            return Malformed(locator, locator, f"{locator}: not valid UTF-8", shown)
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            locator = line_locator(line)
            return Malformed(
                locator, locator, f"{locator}: invalid JSON ({exc.msg})", line_start(text)
            )
        return to_record(value, line, text)

    def checkpoint(self) -> dict[str, Any]:
        offset, line = self._position
        return {"offset": offset, "line": line}

    def close(self) -> None:
        self._file.close()
        self._seen.close()
