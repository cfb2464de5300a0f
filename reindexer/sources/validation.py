"""The rules that make a parsed record well-formed (DESIGN.md, "A record is malformed when")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reindexer.documents import Document, Malformed, Record, preview_of
from reindexer.sources.seen import SeenIds


def line_locator(line: int) -> str:
    """Where a JSONL record is: `line 17`."""
    return f"line {line}"


def line_start(raw: str) -> str:
    """What a malformed line's failure shows of it."""
    return preview_of(raw).rstrip("\r\n")


def _malformed(doc_id: str | None, line: int, reason: str, raw: str = "") -> Malformed:
    locator = line_locator(line)
    failure_id = f"{doc_id} ({locator})" if doc_id else locator
    return Malformed(failure_id, locator, f"{locator}: {reason}", line_start(raw))


def to_record(value: Any, line: int, raw: str = "") -> Record:
    """A Document when `value` is a well-formed JSON object, else a Malformed saying why (`raw`,
    the line it was parsed from, is only read for the Malformed's start of the line).

    Duplicates are a property of the whole source, so `mark_duplicates` catches them afterwards.
    """
    if not isinstance(value, dict):
        return _malformed(None, line, "not a JSON object", raw)
    doc_id = value.get("id")
    if not isinstance(doc_id, str) or not doc_id:
        return _malformed(None, line, "'id' must be a non-empty string", raw)
    if "\x00" in doc_id:
        # PostgreSQL's text and jsonb refuse NUL, so such an id could never be recorded there.
        return _malformed(None, line, "'id' must not contain a NUL character", raw)
    text = value.get("text")
    if not isinstance(text, str) or not text or text.isspace():
        return _malformed(doc_id, line, "'text' must be a non-empty string", raw)
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        return _malformed(doc_id, line, "'metadata' must be an object", raw)
    return Document(doc_id, text, metadata, f"line {line}")  # line_locator, inlined: per document


def mark_duplicates(records: list[Record], lines: Sequence[int], seen: SeenIds) -> list[Record]:
    """Turn, in place, every document whose id an earlier document had into a Malformed."""
    positions = [i for i, record in enumerate(records) if isinstance(record, Document)]
    fresh = seen.add_many([records[i].id for i in positions])
    for i, is_new in zip(positions, fresh, strict=True):
        if not is_new:
            duplicate = records[i]
            # The raw line is gone by now; the document's text is what it held.
            raw = duplicate.text if isinstance(duplicate, Document) else ""
            doc_id = duplicate.id
            records[i] = _malformed(doc_id, lines[i], f"duplicate id {doc_id!r}", raw)
    return records
