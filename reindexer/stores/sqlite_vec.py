"""`sqlite-vec`: one SQLite file per collection in the data dir, with a vec0 table, via apsw."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import apsw
import numpy as np
import sqlite_vec

from reindexer import conf
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import DimensionMismatch, SpecError
from reindexer.stores.base import Hit, IndexReport

# The name becomes a file name, so it is matched whole: fullmatch, as `$` would allow a "\n".
COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BUSY_TIMEOUT_MS = 5000
# The width in the vec0 table's CREATE statement: "embedding float[384] distance_metric=cosine".
_VEC0_WIDTH = re.compile(r"embedding\s+float\[(\d+)\]", re.IGNORECASE)


def validate_collection(name: str) -> None:
    if not COLLECTION_NAME.fullmatch(name):
        raise SpecError(
            f"collection {name!r} must be 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )


class SqliteVecStore:
    """Vectors in a vec0 table, and each document's text and metadata in a plain companion table.

    sqlite-vec 0.1.9 leaks about 128 bytes of SQLite heap per row inserted with auxiliary (`+`)
    columns, and per row deleted, even after the connection closes; a 200k-document job grew by
    ~40 MiB. So the vec0 table holds only `id` and `embedding`, the companion table answers "which
    of these ids exist", and an upsert deletes from vec0 only the ids that are really there. vec0
    also keeps ~40 bytes per row inserted until its connection closes, so the connection is
    reopened after every REOPEN_AFTER_ROWS rows written.
    """

    REOPEN_AFTER_ROWS = 50_000

    def __init__(self, path: Path, dimensions: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dimensions = dimensions
        self._conn = self._connect()
        self._rows_since_open = 0

    def _connect(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path))
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # One statement per call: apsw stops a script at the first statement that returns rows.
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL").fetchall()
        existing = self._existing_dimensions(conn)
        if existing is not None and existing != self.dimensions:
            conn.close()
            raise DimensionMismatch(self.path.stem, existing=existing, wanted=self.dimensions)
        with conn:
            conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING vec0("
                "id text primary key,"
                f" embedding float[{int(self.dimensions)}] distance_metric=cosine)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS docs_meta ("
                "id TEXT PRIMARY KEY, text TEXT NOT NULL, metadata TEXT NOT NULL) WITHOUT ROWID"
            )
        return conn

    @staticmethod
    def _existing_dimensions(conn: apsw.Connection) -> int | None:
        """The width the collection's vec0 table was made for, or None if there is none yet."""
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'docs'"
        ).fetchone()
        match = _VEC0_WIDTH.search(str(row[0])) if row else None
        return int(match.group(1)) if match else None

    @staticmethod
    def path_of(data_dir: Path, collection: str) -> Path:
        return data_dir / "stores" / f"{collection}.sqlite-vec"

    @classmethod
    def for_collection(cls, data_dir: Path, collection: str, dimensions: int) -> SqliteVecStore:
        validate_collection(collection)
        return cls(cls.path_of(data_dir, collection), dimensions)

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """A transaction that takes the write lock at BEGIN. A deferred one reads first, and in
        WAL mode its upgrade to a writer fails at once ("database is locked", no busy wait) when
        another connection, such as another slice's worker, committed since; IMMEDIATE waits."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if not self._conn.getautocommit():  # SQLite may have rolled back itself (a full disk)
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _existing(self, ids: list[str]) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM docs_meta WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
        return [str(doc_id) for (doc_id,) in rows]

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} documents but {len(vectors)} vectors")
        if self._rows_since_open >= self.REOPEN_AFTER_ROWS:
            self._conn.close()
            self._conn = self._connect()
            self._rows_since_open = 0
        vector_rows = [
            (doc.id, np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            for doc, vec in zip(docs, vectors, strict=True)
        ]
        meta_rows = [
            (doc.id, doc.text, json.dumps(doc.metadata, ensure_ascii=False)) for doc in docs
        ]
        # vec0 has no native upsert: delete the ids already there, then insert, atomically.
        with self._write():
            existing = self._existing([doc.id for doc in docs])
            if existing:
                self._conn.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in existing])
            self._conn.executemany("INSERT INTO docs(id, embedding) VALUES (?, ?)", vector_rows)
            self._conn.executemany("INSERT OR REPLACE INTO docs_meta VALUES (?, ?, ?)", meta_rows)
        self._rows_since_open += len(docs)

    def delete(self, ids: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(ids))
        with self._write():
            existing = self._existing(wanted)
            self._conn.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in existing])
            self._conn.executemany("DELETE FROM docs_meta WHERE id = ?", [(i,) for i in existing])
        return len(existing)

    def count(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM docs").fetchone()
        return int(row[0]) if row else 0

    def ids(self) -> Iterator[str]:
        for (doc_id,) in self._conn.execute("SELECT id FROM docs"):
            yield str(doc_id)

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()
        rows = self._conn.execute(
            "SELECT nearest.id, nearest.distance, meta.text, meta.metadata"
            " FROM (SELECT id, distance FROM docs WHERE embedding MATCH ? AND k = ?) AS nearest"
            " LEFT JOIN docs_meta AS meta ON meta.id = nearest.id"
            " ORDER BY nearest.distance",
            (query, int(k)),
        )
        return [Hit(str(i), float(d), str(t or ""), json.loads(m or "{}")) for i, d, t, m in rows]

    def build_index(self, report: IndexReport) -> bool:
        return False  # vec0 searches exactly, by brute force: there is no index to build

    def close(self) -> None:
        self._conn.close()


class SqliteVecBackend:
    """`sqlite-vec`: the embedded store, one file per collection under the data dir's `stores/`."""

    def check_collection(self, name: str) -> None:
        validate_collection(name)

    def location(self, collection: str) -> str:
        return str(SqliteVecStore.path_of(conf.get().data_dir, collection))

    def exists(self, collection: str) -> bool:
        return SqliteVecStore.path_of(conf.get().data_dir, collection).exists()

    def open(self, collection: str, dimensions: int) -> SqliteVecStore:
        return SqliteVecStore.for_collection(conf.get().data_dir, collection, dimensions)
