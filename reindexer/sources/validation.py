"""The rules that make a parsed record well-formed (DESIGN.md, "A record is malformed when")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reindexer.documents import Document, Malformed, Record
from reindexer.sources.seen import SeenIds


def to_record(value: Any, locator: str) -> Record:
    """A Document when `value` is a well-formed JSON object, else a Malformed saying why.

    Duplicates are a property of the whole source, so `mark_duplicates` catches them afterwards.
    """
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
    return Document(doc_id, text, metadata)


def mark_duplicates(
    records: Sequence[Record], locators: Sequence[str], seen: SeenIds
) -> list[Record]:
    """`records` with every document whose id came earlier in the source turned into a Malformed.

    The failure's id names the line too, so it never collides with the first, written copy.
    """
    docs = [(i, r) for i, r in enumerate(records) if isinstance(r, Document)]
    fresh = seen.add_many([doc.id for _, doc in docs])
    result = list(records)
    for (i, doc), is_new in zip(docs, fresh, strict=True):
        if not is_new:
            locator = locators[i]
            result[i] = Malformed(
                f"{doc.id} ({locator})", locator, f"{locator}: duplicate id {doc.id!r}"
            )
    return result
