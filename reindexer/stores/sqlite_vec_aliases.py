"""sqlite-vec's aliases: a table `aliases(alias, target)` in `stores/aliases.sqlite3` (WAL).

A move is one transaction on that table, so a reader that resolves an alias sees the old target
or the new, never neither. The reader of an alias (FollowingReader) resolves it before each read
and opens the target's file without creating it: a file that is not there yet (the plain
collection being moved to `ALIAS__base` under it) or not any more is resolved again, so a read
never fails on a move, and a result set always comes from one file, in one statement.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import apsw

from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import BackendFailed, DimensionMismatch
from reindexer.stores.aliases import ALIAS, refuse_write
from reindexer.stores.base import Hit, IndexReport
from reindexer.stores.sqlite_vec import BUSY_TIMEOUT_MS, SqliteVecStore

FILE_NAME = "aliases.sqlite3"
# How long a reader keeps resolving an alias whose target file it cannot open (a move that has
# renamed the plain collection but not yet committed its alias row takes milliseconds).
RESOLVE_SECONDS = 5.0
RESOLVE_PAUSE = 0.005
_SIDE_FILES = ("-wal", "-shm")


class AliasTable:
    """The aliases of the sqlite-vec collections in one data dir's `stores/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self._conn: apsw.Connection | None = None

    def _existing(self) -> apsw.Connection | None:
        """The connection, or None when no alias was ever made: reading creates nothing."""
        if self._conn is None and not self.path.exists():
            return None
        return self._connection()

    def _connection(self) -> apsw.Connection:
        if self._conn is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            conn = apsw.Connection(str(self.path))
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute(
                "CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, target TEXT NOT NULL)"
            )
            self._conn = conn
        return self._conn

    def target(self, alias: str) -> str | None:
        conn = self._existing()
        if conn is None:
            return None
        row = conn.execute("SELECT target FROM aliases WHERE alias = ?", (alias,)).fetchone()
        return str(row[0]) if row else None

    def aliases_of(self, target: str) -> list[str]:
        conn = self._existing()
        if conn is None:
            return []
        rows = conn.execute("SELECT alias FROM aliases WHERE target = ? ORDER BY alias", (target,))
        return [str(alias) for (alias,) in rows]

    @contextlib.contextmanager
    def moving(self) -> Iterator[apsw.Connection]:
        """The one write transaction of a move (IMMEDIATE: movers queue on the busy timeout)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def move_collection_file(source: Path, destination: Path) -> None:
    """Rename a collection's file, its WAL folded into it first so the file alone is whole.

    The side files go first: an opener of the old name in between finds the main file with an
    empty WAL, which reads the same data.
    """
    conn = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    for suffix in _SIDE_FILES:
        side = source.with_name(source.name + suffix)
        if side.exists():
            os.replace(side, destination.with_name(destination.name + suffix))
    os.replace(source, destination)


def remove_collection_file(path: Path) -> bool:
    """Delete a collection's file and its side files; whether the file was there."""
    existed = path.exists()
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    return existed


class FollowingReader:
    """Reads whatever collection `alias` serves at each call; a store of the alias's own."""

    def __init__(self, table: AliasTable, alias: str, path_of: PathOf, dimensions: int) -> None:
        self._table = table
        self.alias = alias
        self._path_of = path_of
        self._current: tuple[str, SqliteVecStore] | None = None
        first = self._store()
        if first.dimensions != dimensions:
            self.close()
            raise DimensionMismatch(alias, existing=first.dimensions, wanted=dimensions)

    def _store(self) -> SqliteVecStore:
        deadline = time.monotonic() + RESOLVE_SECONDS
        while True:
            target = self._table.target(self.alias) or self.alias
            if self._current is not None and self._current[0] == target:
                return self._current[1]
            try:
                store = SqliteVecStore.existing(self._path_of(target))
            except apsw.CantOpenError:
                if time.monotonic() > deadline:
                    raise BackendFailed(
                        f"alias {self.alias!r} serves {target!r}, whose file is not there",
                        cause=ALIAS,
                    ) from None
                time.sleep(RESOLVE_PAUSE)
                continue
            if self._current is not None:
                self._current[1].close()
            self._current = (target, store)
            return store

    @property
    def target(self) -> str | None:
        return self._table.target(self.alias)

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        raise refuse_write(self.alias, self.target)

    def delete(self, ids: Iterable[str]) -> int:
        raise refuse_write(self.alias, self.target)

    def count(self) -> int:
        return self._store().count()

    def ids(self) -> Iterator[str]:
        return self._store().ids()

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        return self._store().documents(after_id, limit)

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        return self._store().search(vector, k)

    def build_index(self, report: IndexReport) -> bool:
        return False

    def close(self) -> None:
        if self._current is not None:
            self._current[1].close()
            self._current = None
        self._table.close()


class PathOf:
    """A collection's file in a data dir (a callable, so the reader needs no conf)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, collection: str) -> Path:
        return self.folder / f"{collection}.sqlite-vec"
