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
from reindexer.stores import aliases
from reindexer.stores.base import Hit, IndexReport, VectorStore

# The name becomes a file name, so it is matched whole: fullmatch, as `$` would allow a "\n".
COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BUSY_TIMEOUT_MS = 5000
# The width in the vec0 table's CREATE statement: "embedding float[384] distance_metric=cosine".
_VEC0_WIDTH = re.compile(r"embedding\s+float\[(\d+)\]", re.IGNORECASE)


def _open_file(path: Path, *, create: bool) -> apsw.Connection:
    """A WAL connection to `path` with sqlite-vec loaded; without `create`, the file must exist."""
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    conn = apsw.Connection(str(path), flags=flags)
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # One statement per call: apsw stops a script at the first statement that returns rows.
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL").fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


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

    def __init__(self, path: Path, dimensions: int, *, create: bool = True) -> None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dimensions = dimensions
        # Without `create`, a missing file is an error (CantOpenError), never a new collection:
        # how a reader opens a name that a move may have renamed away a moment ago.
        self._create = create
        self._conn = self._connect()
        self._rows_since_open = 0

    @classmethod
    def existing(cls, path: Path) -> SqliteVecStore:
        """The collection in `path` at its own dimensions; apsw.CantOpenError when it is gone."""
        conn = _open_file(path, create=False)
        try:
            dimensions = cls._existing_dimensions(conn)
        finally:
            conn.close()
        if dimensions is None:
            raise apsw.CantOpenError(f"{path} holds no sqlite-vec collection")
        return cls(path, dimensions, create=False)

    def _connect(self) -> apsw.Connection:
        conn = _open_file(self.path, create=self._create)
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

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        rows = self._conn.execute(
            "SELECT id, text, metadata FROM docs_meta WHERE ?1 IS NULL OR id > ?1"
            " ORDER BY id LIMIT ?2",
            (after_id, int(limit)),
        )
        return [Document(str(i), str(t), json.loads(m or "{}")) for i, t, m in rows]

    def build_index(self, report: IndexReport) -> bool:
        return False  # vec0 searches exactly, by brute force: there is no index to build

    def close(self) -> None:
        self._conn.close()


class SqliteVecBackend:
    """`sqlite-vec`: the embedded store, one file per collection under the data dir's `stores/`,
    and its aliases in `stores/aliases.sqlite3` (sqlite_vec_aliases.py)."""

    def check_collection(self, name: str) -> None:
        validate_collection(name)

    @staticmethod
    def _folder() -> Path:
        return conf.get().data_dir / "stores"

    def _path(self, collection: str) -> Path:
        return SqliteVecStore.path_of(conf.get().data_dir, collection)

    def location(self, collection: str) -> str:
        return str(self._path(collection))

    def exists(self, collection: str) -> bool:
        return self.alias_target(collection) is not None or self._path(collection).exists()

    def open(self, collection: str, dimensions: int) -> VectorStore:
        from reindexer.stores import sqlite_vec_aliases as aliasing  # it imports this module

        validate_collection(collection)
        table = aliasing.AliasTable(self._folder())
        if table.target(collection) is None:
            try:
                store = SqliteVecStore(self._path(collection), dimensions, create=False)
            except apsw.CantOpenError:
                # A new collection, made under the movers' lock: a move that renames a plain
                # collection away meanwhile must not leave an empty one under its name.
                made: SqliteVecStore | None = None
                with table.moving():
                    if table.target(collection) is None:
                        made = SqliteVecStore(self._path(collection), dimensions)
                if made is not None:
                    table.close()
                    return made
            else:
                table.close()
                return store
        return aliasing.FollowingReader(
            table, collection, aliasing.PathOf(self._folder()), dimensions
        )

    def open_existing(self, collection: str) -> VectorStore | None:
        validate_collection(collection)
        target = self.alias_target(collection)
        if target is None and not self._path(collection).exists():
            return None
        try:
            probe = SqliteVecStore.existing(self._path(target or collection))
        except apsw.CantOpenError:
            return None  # dropped since, or not a collection file
        probe.close()
        return self.open(collection, probe.dimensions)

    def alias_target(self, alias: str) -> str | None:
        from reindexer.stores import sqlite_vec_aliases as aliasing

        table = aliasing.AliasTable(self._folder())
        try:
            return table.target(alias)
        finally:
            table.close()

    def point_alias(self, alias: str, collection: str) -> str | None:
        from reindexer.stores import sqlite_vec_aliases as aliasing

        validate_collection(alias)
        validate_collection(collection)
        table = aliasing.AliasTable(self._folder())
        try:
            with table.moving() as conn:
                if collection == alias or table.target(collection) is not None:
                    raise aliases.not_a_collection(alias, collection, "it is an alias")
                if not self._path(collection).exists():
                    raise aliases.not_a_collection(alias, collection, "it does not exist")
                previous = table.target(alias)
                if previous is None and self._path(alias).exists():
                    # A plain collection: it moves to ALIAS__base, then the alias row commits.
                    previous = aliases.base_name(alias)
                    if self._path(previous).exists():
                        raise aliases.not_a_collection(
                            alias, collection, f"{alias!r} is a plain collection, and"
                            f" {previous!r}, where it would be kept, exists already",
                        )  # fmt: skip
                    aliasing.move_collection_file(self._path(alias), self._path(previous))
                conn.execute(
                    "INSERT INTO aliases (alias, target) VALUES (?, ?)"
                    " ON CONFLICT (alias) DO UPDATE SET target = excluded.target",
                    (alias, collection),
                )
            return previous
        finally:
            table.close()

    def drop_collection(self, name: str) -> bool:
        from reindexer.stores import sqlite_vec_aliases as aliasing

        validate_collection(name)
        table = aliasing.AliasTable(self._folder())
        try:
            # Under the movers' lock, so no move can make it a target meanwhile.
            with table.moving():
                target = table.target(name)
                if target is not None:
                    raise aliases.refuse_drop_alias(name, target)
                serving = table.aliases_of(name)
                if serving:
                    raise aliases.refuse_drop_target(name, serving)
                return aliasing.remove_collection_file(self._path(name))
        finally:
            table.close()

    def physical_collections(self, alias: str) -> list[str]:
        folder = self._folder()
        names = [p.name.removesuffix(".sqlite-vec") for p in folder.glob("*.sqlite-vec")]
        return aliases.physical_order(alias, names)
