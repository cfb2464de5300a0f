"""The `pgvector` store's own behaviour against a real PostgreSQL 16 with pgvector (pgserver).

The contract every store keeps (idempotent upsert, delete, count, ids, kNN, names, restart) is
the shared suite in tests/stores/; this file covers what is pgvector's alone: the table's exact
columns, one statement per batch, the dimension check, the HNSW build and its progress.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.sql import SQL, Composed, Identifier

from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import BackendFailed, DimensionMismatch, ErrorKind, SpecError, classify
from reindexer.stores import pgvector_index, validate_store
from reindexer.stores.base import IndexBuildAborted, IndexProgress
from reindexer.stores.pgvector import (
    NO_EXTENSION,
    PgvectorBackend,
    PgvectorStore,
    pgvector_configured,
)
from tests.pgvector_server import PgvectorServer, running_server
from tests.sql_databases import throwaway_postgres

pytestmark = pytest.mark.backends

DIM = 8


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def named(url: str, app: str) -> str:
    """`url` with an application_name, so the server log tells this connection's statements."""
    return f"{url}?application_name={app}"


def docs(n: int, start: int = 0, word: str = "text") -> list[Document]:
    return [Document(f"d{i:05d}", f"{word} {i}", {"n": i}) for i in range(start, start + n)]


def vectors(n: int, dim: int = DIM, seed: int = 0) -> Vectors:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    normed: Vectors = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return normed


@pytest.fixture
def store(pgvector_server: PgvectorServer) -> Iterator[PgvectorStore]:
    opened = PgvectorStore(pgvector_server.url, unique(), DIM)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def own_server() -> Iterator[PgvectorServer]:
    """A server of this module's own, for the tests that restart or stop it."""
    with running_server() as server:
        yield server


def sql(url: str, query: str | Composed, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def on_table(template: str, table: str) -> Composed:
    return SQL(template).format(Identifier(table))


def test_a_collection_is_a_table_with_exactly_the_four_columns(
    store: PgvectorStore, pgvector_server: PgvectorServer
) -> None:
    columns = sql(
        pgvector_server.url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        store.table,
    )
    assert columns == [
        ("id", "text"),
        ("embedding", "vector(8)"),
        ("text", "text"),
        ("metadata", "jsonb"),
    ]
    key = sql(
        pgvector_server.url,
        "SELECT kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu USING (constraint_name, table_name)"
        " WHERE tc.table_name = %s AND tc.constraint_type = 'PRIMARY KEY'",
        store.table,
    )
    assert key == [("id",)]


def test_upsert_updates_a_row_in_place_on_conflict(
    store: PgvectorStore, pgvector_server: PgvectorServer
) -> None:
    store.upsert(docs(3), vectors(3))
    changed = [Document("d00001", "new text", {"n": 99, "tags": ["x"]})]
    store.upsert(changed, vectors(1, seed=5))
    rows = sql(
        pgvector_server.url,
        on_table("SELECT id, text, metadata, embedding::text FROM {} ORDER BY id", store.table),
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("d00000", "text 0", {"n": 0}),
        ("d00001", "new text", {"n": 99, "tags": ["x"]}),
        ("d00002", "text 2", {"n": 2}),
    ]
    stored = np.array([float(x) for x in rows[1][3].strip("[]").split(",")], dtype=np.float32)
    assert np.allclose(stored, vectors(1, seed=5)[0], atol=1e-6)


def test_a_repeated_id_in_one_batch_keeps_the_last(store: PgvectorStore) -> None:
    batch = [Document("a", "first"), Document("b", "other"), Document("a", "last")]
    store.upsert(batch, vectors(3))
    [hit] = [h for h in store.search(vectors(3)[2], k=3) if h.id == "a"]
    assert (store.count(), hit.text, round(hit.distance, 5)) == (2, "last", 0.0)


def test_one_batch_is_one_statement_on_the_server(pgvector_server: PgvectorServer) -> None:
    app = unique("batch")
    opened = PgvectorStore(named(pgvector_server.url, app), unique(), DIM)
    try:
        before = len(pgvector_server.statements(app))
        opened.upsert(docs(200), vectors(200))
        sent = pgvector_server.statements(app)[before:]
    finally:
        opened.close()
    assert len(sent) == 1, sent
    assert "INSERT INTO" in sent[0] and "unnest" in sent[0] and "ON CONFLICT (id)" in sent[0]
    # The log does see one statement per row when a client sends them so: the count is real.
    control = unique("rows")
    with psycopg.connect(named(pgvector_server.url, control), autocommit=True) as conn:
        conn.execute(on_table("CREATE TEMP TABLE {} (id text)", control))
        conn.cursor().executemany(on_table("INSERT INTO {} VALUES (%s)", control), [("a",), ("b",)])
    inserts = [s for s in pgvector_server.statements(control) if "INSERT" in s]
    assert len(inserts) == 2, inserts


def test_opening_a_table_of_other_dimensions_fails_with_both_numbers(
    store: PgvectorStore, pgvector_server: PgvectorServer
) -> None:
    store.upsert(docs(2), vectors(2))
    with pytest.raises(DimensionMismatch) as raised:
        PgvectorStore(pgvector_server.url, store.table, 384)
    assert (raised.value.existing, raised.value.wanted) == (DIM, 384)
    assert "8" in str(raised.value) and "384" in str(raised.value)
    assert classify(raised.value) is ErrorKind.STORE
    assert store.count() == 2


def test_a_table_that_is_not_a_collection_is_refused(pgvector_server: PgvectorServer) -> None:
    table = unique("plain")
    sql(pgvector_server.url, on_table("CREATE TABLE {} (id text primary key, body text)", table))
    with pytest.raises(BackendFailed, match="not a pgvector collection"):
        PgvectorStore(pgvector_server.url, table, DIM)


def test_a_server_without_pgvector_is_refused_clearly() -> None:
    # The machine's own PostgreSQL 15 has no pgvector: the store says so, as a store-wide fault.
    with throwaway_postgres() as url, pytest.raises(BackendFailed) as raised:
        PgvectorStore(url, unique(), DIM)
    assert raised.value.cause == NO_EXTENSION
    assert "no pgvector extension" in str(raised.value)
    assert classify(raised.value) is ErrorKind.STORE


def recorder(into: list[IndexProgress]) -> Callable[[IndexProgress], bool]:
    def report(progress: IndexProgress) -> bool:
        into.append(progress)
        return True

    return report


def test_build_index__reports_progress_and_builds_hnsw_once(
    pgvector_server: PgvectorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Poll often: at the default half second, a build that a quiet machine finishes in under
    # a second is seen mid-way once at most.
    monkeypatch.setattr(pgvector_index, "POLL_SECONDS", 0.05)
    opened = PgvectorStore(pgvector_server.url, unique("hnsw"), 384)
    try:
        for start in range(0, 4000, 1000):
            opened.upsert(docs(1000, start), vectors(1000, 384, seed=start))
        seen: list[IndexProgress] = []
        assert opened.build_index(recorder(seen)) is True
        again: list[IndexProgress] = []
        assert opened.build_index(recorder(again)) is False
        hits = opened.search(vectors(1000, 384, seed=2000)[7], k=60)
    finally:
        opened.close()
    assert seen[0] == IndexProgress(detail="starting"), "one report before the build starts"
    assert len(seen) >= 3, seen
    building = [p for p in seen if p.detail.startswith("building index")]
    assert building, [p.detail for p in seen]
    assert all(p.total and 0 <= (p.done or 0) <= p.total for p in building), building
    assert again == []
    [(definition,)] = sql(
        pgvector_server.url,
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
        f"{opened.table}_embedding_hnsw",
    )
    assert "USING hnsw (embedding vector_cosine_ops)" in definition
    # k above HNSW's default ef_search (40) still gets k hits, the exact match first.
    assert len(hits) == 60 and hits[0].id == "d02007"
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_build_index__abandoned_when_report_says_stop(pgvector_server: PgvectorServer) -> None:
    opened = PgvectorStore(pgvector_server.url, unique("abort"), 384)
    try:
        opened.upsert(docs(3000), vectors(3000, 384))
        calls: list[IndexProgress] = []

        def report(progress: IndexProgress) -> bool:
            calls.append(progress)
            return len(calls) < 2

        with pytest.raises(IndexBuildAborted):
            opened.build_index(report)
        with pytest.raises(IndexBuildAborted):
            opened.build_index(lambda p: False)  # before it even starts
        assert opened.count() == 3000
    finally:
        opened.close()
    assert len(calls) == 2
    index = f"{opened.table}_embedding_hnsw"
    assert sql(pgvector_server.url, "SELECT to_regclass(%s)", index) == [(None,)]
    running = sql(
        pgvector_server.url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE query LIKE 'CREATE INDEX%%' AND state = 'active'",
    )
    assert running == [(0,)], "the cancelled CREATE INDEX is no longer running on the server"


def test_a_restart_is_one_transient_error_on_write_then_the_store_reconnects(
    own_server: PgvectorServer,
) -> None:
    opened = PgvectorStore(own_server.url, unique("restart"), DIM)
    try:
        opened.upsert(docs(5), vectors(5))
        own_server.restart()
        assert opened.count() == 5, "a read reconnects on its own"
        own_server.restart()
        with pytest.raises(psycopg.OperationalError) as raised:
            opened.upsert(docs(5, 5), vectors(5))
        assert classify(raised.value) is ErrorKind.TRANSIENT, raised.value
        opened.upsert(docs(5, 5), vectors(5))  # the retry, on a new connection
        assert opened.count() == 10
    finally:
        opened.close()


def test_a_stopped_server_is_a_transient_error(own_server: PgvectorServer) -> None:
    opened = PgvectorStore(own_server.url, unique("down"), DIM)
    own_server.stop()
    try:
        with pytest.raises(psycopg.OperationalError) as on_write:
            opened.upsert(docs(1), vectors(1))
        with pytest.raises(psycopg.OperationalError) as on_open:
            PgvectorStore(own_server.url, unique("down"), DIM)
        for raised in (on_write, on_open):
            assert classify(raised.value) is ErrorKind.TRANSIENT, raised.value
    finally:
        own_server.restart()
    opened.upsert(docs(1), vectors(1))
    assert opened.count() == 1
    opened.close()


def test_a_server_shutting_down_is_a_transient_error(own_server: PgvectorServer) -> None:
    # libpq gives this refusal no SQLSTATE: reindexer.errors knows it by its words.
    holder = psycopg.connect(own_server.url)
    try:
        own_server.begin_smart_shutdown()
        with pytest.raises(psycopg.OperationalError, match="shutting down") as raised:
            PgvectorStore(own_server.url, unique("closing"), DIM)
        assert classify(raised.value) is ErrorKind.TRANSIENT
    finally:
        holder.close()
        own_server.restart()


def test_the_spec_is_refused_without_the_setting(settings: Any) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=None)
    assert not pgvector_configured()
    with pytest.raises(SpecError, match="REINDEXER_PGVECTOR_URL"):
        validate_store("pgvector")
    with pytest.raises(SpecError, match="REINDEXER_PGVECTOR_URL"):
        validate_store("flaky(pgvector,latency=10)")


def test_the_spec_takes_no_options(settings: Any, pgvector_server: PgvectorServer) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=pgvector_server.url)
    assert pgvector_configured()
    validate_store("pgvector")
    for spec in ("pgvector(url=postgres://elsewhere)", "pgvector:elsewhere"):
        with pytest.raises(SpecError, match="pgvector"):
            validate_store(spec)


@pytest.mark.parametrize("name", ["docs", "_x", "a1_b2", "alias__42", "a" * 48])
def test_collection_names_that_are_plain_lower_case_identifiers_pass(name: str) -> None:
    PgvectorBackend().check_collection(name)


@pytest.mark.parametrize(
    "name",
    ["", "Docs", "1docs", "my-docs", "a b", 'a"b', "a;drop table x", "a" * 49, "pg_docs", "a\n"],
)
def test_other_collection_names_are_refused(name: str) -> None:
    with pytest.raises(SpecError):
        PgvectorBackend().check_collection(name)


def test_location_names_the_table_and_database_but_no_password(settings: Any) -> None:
    url = "postgresql://reindexer:s3cret-pw@db.example:6543/vectors"
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=url)
    where = PgvectorBackend().location("docs")
    assert where == "table 'docs' in database vectors on db.example:6543"
    assert "s3cret" not in where and "reindexer" not in where
