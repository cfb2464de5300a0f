"""`pgvector`: PostgreSQL with the pgvector extension, in the database at REINDEXER_PGVECTOR_URL.

Collection `C` is the table `C` in the connection's default schema, with exactly the columns
`id text primary key, embedding vector(N), text text, metadata jsonb`, so operators can query it
with plain SQL. Names follow COLLECTION_NAME: lower case, so `SELECT * FROM c` finds the table
without quoting, and short enough that the index name `C_embedding_hnsw` fits PostgreSQL's 63
bytes uncut.

Every write is one statement, in autocommit: a batch is a single `INSERT ... SELECT FROM
unnest(...) ON CONFLICT (id) DO UPDATE` with the columns as binary arrays, so one round trip
and one commit per batch. After the job's last batch `build_index` builds the HNSW index
(pgvector_index.py).

A connection the server dropped (restart, failover) surfaces as psycopg's OperationalError
(SQLSTATE 57P01, 08xxx, "connection refused"), which the engine retries as transient and counts
in the job's retries; the next call opens a new connection. Reads (count, ids, search) have no
engine retry around them, so they try once more on a new connection by themselves.

The `pgvector` Python adapter is the extra `[pgvector]`, imported when a collection is opened.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import (
    BAD_SETTING,
    BackendFailed,
    DimensionMismatch,
    ErrorKind,
    SpecError,
    classify,
)
from reindexer.stores import aliases, pgvector_aliases
from reindexer.stores.aliases import AliasReader
from reindexer.stores.base import Hit, IndexReport, VectorStore
from reindexer.stores.pgvector_index import build_hnsw, index_name

SETTING = "REINDEXER_PGVECTOR_URL"
# Lower-case identifiers, 1-48 bytes: 48 + len("_embedding_hnsw") = 63, PostgreSQL's limit.
COLLECTION_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
CONNECT_TIMEOUT_SECONDS = 10
# libpq options that notice a silent server (a partition, a dead host) in about 10-15 s rather
# than the kernel's minutes: keepalives for an idle connection (5 s idle, then 3 probes 2 s
# apart), tcp_user_timeout (ms) for a request the server never acknowledges. The job database's
# connections get the same (settings.py); settings in the URL win over both.
LIVENESS_OPTIONS: dict[str, int] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}
APPLICATION_NAME = "reindexer-pgvector"
IDS_PAGE = 10_000
# HNSW searches look at ef_search candidates (pgvector's default 40), so a larger k needs more.
DEFAULT_EF_SEARCH = 40
NO_EXTENSION = "no pgvector"
NOT_A_COLLECTION = "not a collection"
# Serialises CREATE EXTENSION / CREATE TABLE between workers opening at once: both statements
# race on the catalogue's unique indexes even with IF NOT EXISTS.
_SCHEMA_LOCK = 0x7267_7665  # "rgve"
_T = TypeVar("_T")


def adapter_installed() -> bool:
    """Whether the extra `[pgvector]` is there, without importing it."""
    try:
        return importlib.util.find_spec("pgvector") is not None
    except (ImportError, ValueError):
        return False


def pgvector_configured() -> bool:
    return conf.get().pgvector_url is not None and adapter_installed()


@dataclass(frozen=True, slots=True)
class PgvectorOptions:
    """`pgvector` takes no options: the database comes from the settings, never from the spec."""

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if spec.arg or spec.items:
            raise SpecError("pgvector takes no options: its database is set by " + SETTING)
        if conf.get().pgvector_url is None:
            raise SpecError(
                f"pgvector store needs the setting {SETTING} (or a PostgreSQL DATABASE_URL)",
                field="store",
            )
        if not adapter_installed():
            raise SpecError(
                "pgvector store needs the Python adapter: pip install '.[pgvector]'", field="store"
            )
        return cls()


def validate_collection(name: str) -> None:
    if not COLLECTION_NAME.fullmatch(name):
        raise SpecError(
            f"collection {name!r} must be 1-48 lower-case letters, digits or '_', not starting"
            " with a digit (it is a PostgreSQL table name)",
            field="collection",
        )
    if name.startswith("pg_"):
        raise SpecError(f"collection {name!r}: names starting pg_ are PostgreSQL's own")


def describe_database(url: str) -> str:
    """`database D on host:port`, from the URL, without user or password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return f"the database at {SETTING}"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"database {params.get('dbname') or '?'!s} on {host!s}:{port!s}"


def _url() -> str:
    url = conf.get().pgvector_url
    if url is None:
        raise SpecError(f"pgvector store needs the setting {SETTING}", field="store")
    return url


def lost_connection(exc: psycopg.OperationalError) -> psycopg.OperationalError:
    """`exc`, from a connection that failed or broke, as the engine should read it.

    libpq's connection errors carry no SQLSTATE, and some say only "the database system is
    shutting down" or "is starting up" (a restart): those become SQLSTATE 08006,
    connection_failure, which is transient. Store-wide faults (a wrong password) stay as they are.
    """
    if classify(exc) is not ErrorKind.DOCUMENT:
        return exc
    failure = psycopg.errors.ConnectionFailure(str(exc))
    failure.__cause__ = exc
    return failure


def _parsed(url: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message quotes the URL back, password and all: name the setting instead.
        raise BackendFailed(
            f"{SETTING} is not a valid PostgreSQL URL or conninfo string", cause=BAD_SETTING
        ) from None


def _open_connection(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to `url` with LIVENESS_OPTIONS, except those the URL sets itself."""
    given = _parsed(url)
    defaults = {name: value for name, value in LIVENESS_OPTIONS.items() if name not in given}
    try:
        return psycopg.connect(url, **{**defaults, **kwargs})
    except psycopg.OperationalError as exc:
        raise lost_connection(exc) from exc


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection with the vector type registered; settings in the URL win."""
    from pgvector.psycopg import register_vector

    given = _parsed(url)
    extra: dict[str, Any] = {}
    if "application_name" not in given:
        extra["application_name"] = APPLICATION_NAME
    conn = _open_connection(url, autocommit=True, **extra)
    try:
        register_vector(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(url: str, table: str, dimensions: int) -> None:
    """The extension and the table, if missing; DimensionMismatch if the table has another width.

    On a connection of its own: the vector type must exist before a connection registers it.
    """
    with _open_connection(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as exc:
            raise BackendFailed(
                f"the server of {describe_database(url)} has no pgvector extension"
                f" to create ({exc})",
                cause=NO_EXTENSION,
            ) from exc
        existing = _existing_width(conn, table)
        if existing is None:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, embedding vector({}),"
                    " text text, metadata jsonb)"
                ).format(sql.Identifier(table), sql.Literal(int(dimensions)))
            )
        elif existing != dimensions:
            raise DimensionMismatch(table, existing=existing, wanted=dimensions)


def _existing_width(conn: psycopg.Connection[Any], table: str) -> int | None:
    """The `vector(N)` width of the table's embedding column; None when there is no table."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(table).as_string(conn),)
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod), a.atttypmod FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (sql.Identifier(table).as_string(conn),),
    ).fetchone()
    if row is None or not str(row[0]).startswith("vector(") or int(row[1]) <= 0:
        raise BackendFailed(
            f"table {table!r} exists but is not a pgvector collection: it needs the columns"
            " id text primary key, embedding vector(N), text text, metadata jsonb",
            cause=NOT_A_COLLECTION,
        )
    return int(row[1])


class PgvectorStore:
    """One collection: the table `table` of the database at `url`."""

    def __init__(self, url: str, table: str, dimensions: int) -> None:
        self.url = url
        self.table = table
        self.dimensions = dimensions
        self._name = sql.Identifier(table)
        self._conn: psycopg.Connection[Any] | None = None
        _create_schema(url, table, dimensions)
        self._conn = connect(url)
        self._upsert = sql.SQL(
            "INSERT INTO {t} (id, embedding, text, metadata)"
            " SELECT * FROM unnest(%b::text[], %b::vector[], %b::text[], %b::jsonb[])"
            " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding,"
            " text = EXCLUDED.text, metadata = EXCLUDED.metadata"
        ).format(t=self._name)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
        return self._conn

    def _call(self, work: Callable[[psycopg.Connection[Any]], _T], *, again: bool = True) -> _T:
        """`work` on the connection. If the server dropped it (a restart), a read runs once more
        on a new one; a write raises, so the engine's retry counts it, and the next call
        reconnects."""
        try:
            return work(self._connection())
        except psycopg.OperationalError as exc:
            if self._conn is not None and not (self._conn.broken or self._conn.closed):
                raise  # the connection is fine: the statement itself failed
            self._drop()
            if not again:
                raise lost_connection(exc) from exc
        return work(self._connection())

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} documents but {len(vectors)} vectors")
        if not docs:
            return
        # The last of a repeated id wins, as separate upserts would: ON CONFLICT refuses to
        # touch one row twice in a statement.
        rows = {doc.id: (doc, i) for i, doc in enumerate(docs)}
        matrix = np.asarray(vectors, dtype=np.float32)
        params = (
            list(rows),
            [matrix[i] for _, i in rows.values()],
            [doc.text for doc, _ in rows.values()],
            [Jsonb(doc.metadata) for doc, _ in rows.values()],
        )
        self._call(lambda conn: conn.execute(self._upsert, params), again=False)

    def delete(self, ids: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return 0
        query = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._name)
        return self._call(lambda conn: conn.execute(query, (wanted,)).rowcount, again=False)

    def count(self) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(self._name)
        row = self._call(lambda conn: conn.execute(query).fetchone())
        return int(row[0]) if row else 0

    def ids(self) -> Iterator[str]:
        # Keyset pages, each its own statement: nothing held open between the caller's steps.
        query = sql.SQL("SELECT id FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(self._name)
        after = ""

        def page_after(key: str) -> list[tuple[Any, ...]]:
            return self._call(lambda conn: conn.execute(query, (key, IDS_PAGE)).fetchall())

        while True:
            page = page_after(after)
            for (doc_id,) in page:
                yield str(doc_id)
            if len(page) < IDS_PAGE:
                return
            after = str(page[-1][0])

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        query = sql.SQL(
            "SELECT id, text, metadata FROM {} WHERE %(after)s::text IS NULL OR id > %(after)s"
            " ORDER BY id LIMIT %(limit)s"
        ).format(self._name)
        params = {"after": after_id, "limit": int(limit)}
        rows = self._call(lambda conn: conn.execute(query, params).fetchall())
        return [
            Document(str(i), str(t or ""), m if isinstance(m, dict) else {}) for i, t, m in rows
        ]

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        query = sql.SQL(
            "SELECT id, embedding <=> %(q)s AS distance, text, metadata FROM {}"
            " ORDER BY embedding <=> %(q)s LIMIT %(k)s"
        ).format(self._name)

        def nearest(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with conn.transaction():
                # SET LOCAL: the wider search is for this query only.
                ef = max(DEFAULT_EF_SEARCH, int(k))
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                return conn.execute(query, {"q": query_vector, "k": int(k)}).fetchall()

        return [
            Hit(str(i), float(d), str(t or ""), m if isinstance(m, dict) else {})
            for i, d, t, m in self._call(nearest)
        ]

    def build_index(self, report: IndexReport) -> bool:
        return self._call(lambda conn: build_hnsw(conn, self.url, self.table, report), again=False)

    def close(self) -> None:
        self._drop()


class PgvectorBackend:
    """`pgvector`: a table per collection in the database at REINDEXER_PGVECTOR_URL, and a view
    per alias (pgvector_aliases.py)."""

    def check_collection(self, name: str) -> None:
        validate_collection(name)

    def location(self, collection: str) -> str:
        url = conf.get().pgvector_url
        where = describe_database(url) if url else f"the database at {SETTING}"
        return f"table {collection!r} in {where}"

    def exists(self, collection: str) -> bool:
        validate_collection(collection)
        with _open_connection(_url()) as conn:
            return pgvector_aliases.kind_of(conn, collection) in (
                pgvector_aliases.TABLE,
                pgvector_aliases.VIEW,
            )

    def open(self, collection: str, dimensions: int) -> VectorStore:
        validate_collection(collection)
        url = _url()
        with _open_connection(url) as conn:
            target = pgvector_aliases.view_target(conn, collection)
        store = PgvectorStore(url, collection, dimensions)
        # The store reads the view, so each statement follows the alias as it moves.
        return store if target is None else AliasReader(collection, store, target)

    def open_existing(self, collection: str) -> VectorStore | None:
        validate_collection(collection)
        with _open_connection(_url()) as conn:
            width = _existing_width(conn, collection)
        return None if width is None else self.open(collection, width)

    def alias_target(self, alias: str) -> str | None:
        validate_collection(alias)
        with _open_connection(_url()) as conn:
            return pgvector_aliases.view_target(conn, alias)

    def point_alias(self, alias: str, collection: str) -> str | None:
        validate_collection(alias)
        validate_collection(collection)
        base = aliases.base_name(alias)
        self._check_base(alias, base)
        with _open_connection(_url()) as conn:  # one transaction, committed on leaving
            return pgvector_aliases.point(conn, alias, collection, base)

    @staticmethod
    def _check_base(alias: str, base: str) -> None:
        try:
            validate_collection(base)
        except SpecError as exc:
            raise aliases.not_a_collection(
                alias, base, f"{alias!r} is too long to keep a plain table as {base!r}: {exc}"
            ) from exc

    def drop_collection(self, name: str) -> bool:
        validate_collection(name)
        with _open_connection(_url()) as conn:
            return pgvector_aliases.drop(conn, name)

    def physical_collections(self, alias: str) -> list[str]:
        validate_collection(alias)
        with _open_connection(_url()) as conn:
            return pgvector_aliases.physical_tables(conn, alias)


__all__ = [
    "PgvectorBackend",
    "PgvectorOptions",
    "PgvectorStore",
    "pgvector_configured",
    "index_name",
]
