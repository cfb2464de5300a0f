"""A set of document ids kept on disk, so that spotting duplicates costs no memory per document."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import apsw


class SeenIds:
    """Remembers ids in a temporary SQLite file with a small page cache."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="reindexer-seen-")
        self._conn = apsw.Connection(str(Path(self._dir.name) / "seen.db"))
        for statement in (
            "PRAGMA journal_mode=OFF",
            "PRAGMA synchronous=OFF",
            "PRAGMA cache_size=-4096",
            "CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID",
        ):
            self._conn.execute(statement).fetchall()
        self._conn.execute("BEGIN")

    def add_many(self, ids: Sequence[str]) -> list[bool]:
        """Record `ids` in order; for each, True if it is new (not seen before, nor earlier here).

        Two statements per call rather than one per id: this runs once per chunk of a source.
        """
        packed = json.dumps(ids)
        earlier = {
            row[0]
            for row in self._conn.execute(
                "SELECT id FROM seen WHERE id IN (SELECT value FROM json_each(?))", (packed,)
            )
        }
        self._conn.execute("INSERT OR IGNORE INTO seen SELECT value FROM json_each(?)", (packed,))
        fresh: list[bool] = []
        for doc_id in ids:
            fresh.append(doc_id not in earlier)
            earlier.add(doc_id)
        return fresh

    def close(self) -> None:
        self._conn.close()
        self._dir.cleanup()

    def __enter__(self) -> SeenIds:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
