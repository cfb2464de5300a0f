"""The records that flow from a source through the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """A well-formed record: written to the store under `id`.

    `locator` says where it is in its source (`line 17`, a file's relative path), so that a
    failure can point back at it.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Where a document was read is not part of what it is: equal documents stay equal.
    locator: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record that cannot be written; it is recorded as a failure, never dropped.

    `id` names it in the failure: its locator (`line 17`), or, when it carries a usable id, that
    id with its locator (`doc-5 (line 17)`), so it never collides with a written document of the
    same id. Only well-formed records count as having been seen for duplicate detection.
    `raw` is the start of the record as read (a JSONL line), when there is one to show.
    """

    id: str
    locator: str
    reason: str
    raw: str = field(default="", compare=False)


Record = Document | Malformed

# The error type of failures that record malformed records: retrying them cannot help.
MALFORMED_ERROR = "MalformedRecord"

# How much of a failing record's text its failure keeps, for an operator to see what failed.
PREVIEW_CHARS = 300


def preview_of(text: str) -> str:
    """The start of `text` that a failure keeps."""
    return text[:PREVIEW_CHARS]
