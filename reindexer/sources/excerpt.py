"""The place in its source that a failure points at: a JSONL line and its neighbours, or the start
of a file (of an HTML or PDF file, the start of its text), read only from inside the allowed roots
and cut to a size a page can show."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from reindexer import conf
from reindexer.documents import MALFORMED_ERROR
from reindexer.errors import SourcePathError, SpecError
from reindexer.sources import SOURCES
from reindexer.sources.extract import Unreadable, extract, format_of, html_encoding
from reindexer.sources.paths import open_source_file, resolve_source_path

# Lines shown before and after the failing line.
CONTEXT_LINES = 2
# What is shown of each line, and of a file.
LINE_CHARS = 1000
FILE_CHARS = 4000
_LINE_LOCATOR = re.compile(r"line (\d+)")
# A malformed record's id may carry its locator: `doc-5 (line 17)`.
_ID_WITH_LOCATOR = re.compile(r"(.*) \((line \d+)\)", re.S)


@dataclass(frozen=True)
class ExcerptLine:
    number: int
    text: str
    cut: bool
    failing: bool


@dataclass(frozen=True)
class Excerpt:
    """What a page shows: the lines (or the file's start), else `problem`, a sentence saying why
    not; `changed` when the source no longer holds the failing record where it was."""

    path: str
    lines: list[ExcerptLine] = field(default_factory=list)
    problem: str = ""
    changed: bool = False


@dataclass(frozen=True)
class FailingRecord:
    """What a failure says of its record: where it was, its id (if it had one), its start."""

    source: str
    locator: str
    doc_ids: list[str]
    error_type: str
    preview: str

    @property
    def doc_id(self) -> str | None:
        """The record's own id; a malformed record's failure id may hold its locator too."""
        if not self.doc_ids:
            return None
        first = self.doc_ids[0]
        if self.error_type != MALFORMED_ERROR:
            return first
        match = _ID_WITH_LOCATOR.fullmatch(first)
        return match.group(1) if match else None


def excerpt(record: FailingRecord) -> Excerpt:
    """The failing record's place in its source; never raises for a source that went away."""
    if not record.locator:
        return Excerpt("", problem="This failure does not say where its record is in the source.")
    try:
        resolved = SOURCES.resolve(record.source)
    except (SpecError, OSError) as exc:  # SourcePathError is a SpecError
        return Excerpt("", problem=f"The source cannot be read any more: {exc}")
    if resolved.spec.name == "sql":  # rows, not lines: the failure's preview shows the row
        table = resolved.options.table
        return Excerpt(table, problem=f"A sql source has no lines to show: it reads table {table}.")
    path: Path = resolved.options.path
    try:
        if resolved.spec.name == "jsonl":
            return _jsonl_excerpt(path, record)
        if resolved.spec.name == "directory":
            return _file_excerpt(path, record)
    except SourcePathError as exc:
        return Excerpt(str(path), problem=f"The source file cannot be read any more: {exc}")
    except OSError as exc:
        return Excerpt(str(path), problem=f"The source file cannot be read: {exc.strerror}")
    return Excerpt(str(path), problem=f"A {resolved.spec.name} source has no lines to show.")


def _cut(text: str, limit: int) -> tuple[str, bool]:
    text = text.rstrip("\r\n")
    return (text[:limit], True) if len(text) > limit else (text, False)


def _jsonl_excerpt(path: Path, record: FailingRecord) -> Excerpt:
    match = _LINE_LOCATOR.fullmatch(record.locator)
    if match is None:
        return Excerpt(str(path), problem=f"{record.locator!r} is not a line of the file.")
    target = int(match.group(1))
    first = max(1, target - CONTEXT_LINES)
    lines: list[ExcerptLine] = []
    failing_raw: bytes | None = None
    with open_source_file(path) as f:
        for number, raw in enumerate(f, start=1):
            if number < first:
                continue
            if number > target + CONTEXT_LINES:
                break
            if number == target:
                failing_raw = raw
            text, cut = _cut(raw.decode("utf-8", "replace"), LINE_CHARS)
            lines.append(ExcerptLine(number, text, cut, number == target))
    if failing_raw is None:
        return Excerpt(
            str(path),
            lines,
            problem=f"The file has changed: it has no line {target} any more.",
            changed=True,
        )
    if not _line_holds(failing_raw, record):
        return Excerpt(
            str(path),
            lines,
            problem=f"The file has changed: line {target} no longer holds this record.",
            changed=True,
        )
    return Excerpt(str(path), lines)


def _line_holds(raw: bytes, record: FailingRecord) -> bool:
    """Whether the line still holds the failing record: its id, or (no id) its start."""
    expected = record.doc_id
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff")  # a BOM can open the file
    if expected is None:
        return text.rstrip("\r\n").startswith(record.preview)
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("id") == expected


def _file_excerpt(folder: Path, record: FailingRecord) -> Excerpt:
    # Checked like a source path: inside the roots, no `..`, no links.
    path = resolve_source_path(
        str(folder / record.locator), conf.get().source_roots, want_dir=False
    )
    kind = format_of(path.name)
    with open_source_file(path) as f:
        # A UTF-8 character is at most 4 bytes; HTML and PDF must be read whole to be parsed.
        data = f.read(4 * FILE_CHARS) if kind == "text" else f.read()
    if kind == "text":
        text = data.decode("utf-8", "replace")
    else:
        try:
            text = extract(path.name, data).text  # what was indexed, as the preview has it
        except Unreadable as exc:
            if kind == "pdf":
                return Excerpt(str(path), problem=f"The PDF has no text to show: {exc.reason}.")
            text = _markup(data)
    shown, cut = text[:FILE_CHARS], len(text) > FILE_CHARS
    lines = [ExcerptLine(1, shown, cut, True)]
    if record.preview and not text.startswith(record.preview):
        return Excerpt(
            str(path),
            lines,
            problem="The file has changed: it no longer starts with the failing text.",
            changed=True,
        )
    return Excerpt(str(path), lines)


def _markup(data: bytes) -> str:
    """An HTML file with no text as its markup, decoded as the source decodes it."""
    try:
        encoding = html_encoding(data)
    except Unreadable:  # an unknown <meta charset>
        encoding = "utf-8"
    return data[: 4 * FILE_CHARS].decode(encoding, "replace")
