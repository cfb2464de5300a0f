"""The rules that make a parsed record well-formed (DESIGN.md, "A record is malformed when")."""

from __future__ import annotations

from typing import Any

from reindexer.documents import Document, Malformed, Record
from reindexer.sources.seen import SeenIds


def to_record(value: Any, locator: str, seen: SeenIds) -> Record:
    """A Document when `value` is a well-formed JSON object, else a Malformed saying why."""
    if not isinstance(value, dict):
        return Malformed(locator, locator, f"{locator}: not a JSON object")
    doc_id = value.get("id")
    if not isinstance(doc_id, str) or not doc_id:
        return Malformed(locator, locator, f"{locator}: 'id' must be a non-empty string")
    text = value.get("text")
    if not isinstance(text, str) or not text.strip():
        return Malformed(doc_id, locator, f"{locator}: 'text' must be a non-empty string")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        return Malformed(doc_id, locator, f"{locator}: 'metadata' must be an object")
    if not seen.add(doc_id):
        return Malformed(
            f"{doc_id} ({locator})", locator, f"{locator}: duplicate id {doc_id!r}"
        )
    return Document(doc_id, text, metadata)
