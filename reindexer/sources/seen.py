"""The ids a source has yielded so far, to spot duplicates with bounded memory."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import apsw

# Up to this many ids stay in a Python set (a few MiB); past it they move to a temporary SQLite
# file with a small page cache, so that memory stays flat however long the source is.
IN_MEMORY_IDS = 50_000


class SeenIds:
    def __init__(self, in_memory_limit: int = IN_MEMORY_IDS) -> None:
        self._limit = in_memory_limit
        self._memory: set[str] | None = set()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._conn: apsw.Connection | None = None

    def add_many(self, ids: Sequence[str]) -> list[bool]:
        """Record `ids` in order; for each, True if it is new (not seen before nor earlier here)."""
        memory = self._memory
        if memory is not None and len(memory) + len(ids) <= self._limit:
            return self._add_in_memory(memory, ids)
        conn = self._conn if memory is None else self._spill(memory)
        if conn is None:
            raise ValueError("SeenIds is closed")
        return self._add_on_disk(conn, ids)

    @staticmethod
    def _add_in_memory(memory: set[str], ids: Sequence[str]) -> list[bool]:
        fresh: list[bool] = []
        for doc_id in ids:
            fresh.append(doc_id not in memory)
            memory.add(doc_id)
        return fresh

    def _spill(self, memory: set[str]) -> apsw.Connection:
        self._dir = tempfile.TemporaryDirectory(prefix="reindexer-seen-")
        conn = self._conn = apsw.Connection(str(Path(self._dir.name) / "seen.db"))
        for statement in (
            "PRAGMA journal_mode=OFF",
            "PRAGMA synchronous=OFF",
            "PRAGMA cache_size=-4096",
            "CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID",
        ):
            conn.execute(statement).fetchall()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO seen VALUES (?)", ((i,) for i in memory))
        self._memory = None
        return conn

    @staticmethod
    def _add_on_disk(conn: apsw.Connection, ids: Sequence[str]) -> list[bool]:
        """Two statements per call rather than one per id: this runs once per chunk of a source."""
        packed = json.dumps(ids)
        earlier = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM seen WHERE id IN (SELECT value FROM json_each(?))", (packed,)
            )
        }
        conn.execute("INSERT OR IGNORE INTO seen SELECT value FROM json_each(?)", (packed,))
        fresh: list[bool] = []
        for doc_id in ids:
            fresh.append(doc_id not in earlier)
            earlier.add(doc_id)
        return fresh

    def close(self) -> None:
        self._memory = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> SeenIds:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
