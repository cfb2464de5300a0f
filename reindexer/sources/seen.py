"""A set of document ids kept on disk, so that spotting duplicates costs no memory per document."""

from __future__ import annotations

import tempfile
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

    def add(self, doc_id: str) -> bool:
        """Record `doc_id`; False if it was seen before."""
        self._conn.execute("INSERT OR IGNORE INTO seen VALUES (?)", (doc_id,))
        return self._conn.changes() == 1

    def close(self) -> None:
        self._conn.close()
        self._dir.cleanup()

    def __enter__(self) -> SeenIds:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
