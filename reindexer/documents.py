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

    `id` is the record's own id when it has a usable one, else its locator (`line 17`).
    """

    id: str
    locator: str
    reason: str


Record = Document | Malformed
