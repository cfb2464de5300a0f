"""The records that flow from a source through the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """A well-formed record: written to the store under `id`."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record that cannot be written; it is recorded as a failure, never dropped.

    `id` names it in the failure: its locator (`line 17`), or, when it carries a usable id, that
    id with its locator (`doc-5 (line 17)`), so it never collides with a written document of the
    same id. Only well-formed records count as having been seen for duplicate detection.
    """

    id: str
    locator: str
    reason: str


Record = Document | Malformed

# The error type of failures that record malformed records: retrying them cannot help.
MALFORMED_ERROR = "MalformedRecord"
