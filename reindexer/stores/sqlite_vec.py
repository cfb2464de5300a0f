"""`sqlite-vec`: one SQLite file per collection in the data dir, a vec0 table, opened through apsw."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import apsw
import numpy as np
import sqlite_vec

from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import SpecError
from reindexer.stores.base import Hit

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BUSY_TIMEOUT_MS = 5000


def validate_collection(name: str) -> None:
    if not COLLECTION_NAME.match(name):
        raise SpecError(
            f"collection {name!r} must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )


class SqliteVecStore:
    def __init__(self, path: Path, dimensions: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dimensions = dimensions
        self._conn = apsw.Connection(str(path))
        self._conn.enable_load_extension(True)
        self._conn.load_extension(sqlite_vec.loadable_path())
        self._conn.enable_load_extension(False)
        self._conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # One statement per call: apsw stops a script at the first statement that returns rows.
        self._conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self._conn.execute("PRAGMA synchronous=NORMAL").fetchall()
        self._conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING vec0("
            f"id text primary key, embedding float[{int(dimensions)}] distance_metric=cosine,"
            " +text text, +metadata text)"
        )

    @classmethod
    def for_collection(cls, data_dir: Path, collection: str, dimensions: int) -> SqliteVecStore:
        validate_collection(collection)
        return cls(data_dir / "stores" / f"{collection}.sqlite-vec", dimensions)

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} documents but {len(vectors)} vectors")
        rows = [
            (doc.id, np.ascontiguousarray(vec, dtype=np.float32).tobytes(), doc.text,
             json.dumps(doc.metadata, ensure_ascii=False))
            for doc, vec in zip(docs, vectors, strict=True)
        ]
        # vec0 has no native upsert: delete then insert, atomically.
        with self._conn:
            self._conn.executemany("DELETE FROM docs WHERE id = ?", [(r[0],) for r in rows])
            self._conn.executemany(
                "INSERT INTO docs(id, embedding, text, metadata) VALUES (?, ?, ?, ?)", rows
            )

    def delete(self, ids: Iterable[str]) -> int:
        removed = 0
        with self._conn:
            for doc_id in ids:
                self._conn.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
                removed += self._conn.changes()
        return removed

    def count(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM docs").fetchone()
        return int(row[0]) if row else 0

    def ids(self) -> Iterator[str]:
        for (doc_id,) in self._conn.execute("SELECT id FROM docs"):
            yield str(doc_id)

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1).tobytes()
        rows = self._conn.execute(
            "SELECT id, distance, text, metadata FROM docs WHERE embedding MATCH ? AND k = ?"
            " ORDER BY distance",
            (query, int(k)),
        )
        return [Hit(str(i), float(d), str(t), json.loads(m or "{}")) for i, d, t, m in rows]

    def close(self) -> None:
        self._conn.close()
