"""The `sql:TABLE` source against real databases: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.documents import Document, Malformed, Record
from reindexer.errors import SourceUnavailable, SpecError
from reindexer.sources import open_source
from reindexer.sources.excerpt import FailingRecord, excerpt
from reindexer.sources.sql import SqlReader, SqlSource
from tests.sql_databases import postgres_runner, sqlite_runner, throwaway_postgres

# A port nothing listens on: connections are refused at once.
UNREACHABLE_URL = "postgres://postgres@127.0.0.1:1/nowhere"

GOOD_ROWS: list[tuple[Any, Any, Any]] = [
    ("a-1", "first text", '{"lang": "en"}'),
    ("a-2", "second text", None),
    ("a-3", "third text", "{}"),
]
BAD_ROWS: list[tuple[Any, Any, Any]] = [
    ("b-null-text", None, "{}"),
    ("", "an empty id", "{}"),
    ("b-list-metadata", "metadata is a list", "[1, 2]"),
    ("b-broken-metadata", "metadata is not JSON", "{oops"),
]


class Database:
    """A source database of one kind, its tables created through its own driver."""

    def __init__(self, url: str, run: Callable[[str, list[tuple[Any, ...]]], None]) -> None:
        self.url = url
        self._run = run

    def table(
        self,
        name: str,
        rows: list[tuple[Any, Any, Any]],
        columns: tuple[str, str, str] = ("id", "text", "metadata"),
        *,
        unique: bool = True,
        metadata_type: str = "text",
    ) -> None:
        id_col, text_col, meta_col = columns
        key = " primary key" if unique else ""
        self._run(f"drop table if exists {name}", [])
        self._run(
            f"create table {name} ({id_col} text{key}, {text_col} text,"
            f" {meta_col} {metadata_type})",
            [],
        )
        for row in rows:
            self._run(
                f"insert into {name} ({id_col}, {text_col}, {meta_col}) values (?, ?, ?)",  # noqa: S608
                [row],
            )

    def execute(self, sql: str) -> None:
        self._run(sql, [])


def _sqlite(path: Path) -> Database:
    return Database(f"sqlite:///{path}", sqlite_runner(path))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def _postgres(url: str) -> Database:
    return Database(url, postgres_runner(url))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path, settings: Any) -> Database:
    if request.param == "sqlite":
        db = _sqlite(tmp_path / "source.sqlite3")
    else:
        db = _postgres(request.getfixturevalue("postgres_url"))
    use_url(settings, db.url)
    return db


def use_url(settings: Any, url: str | None) -> None:
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER, sql_source_url=url, retry_backoff_seconds=0.001
    )


def read_all(source: SqlSource | Any, batch: int = 2) -> list[Record]:
    reader = source.open()
    try:
        records: list[Record] = []
        while batch_records := reader.read_batch(batch):
            records.extend(batch_records)
        return records
    finally:
        reader.close()


def documents(records: list[Record]) -> list[Document]:
    return [r for r in records if isinstance(r, Document)]


def reasons(records: list[Record]) -> dict[str, str]:
    return {r.locator: r.reason for r in records if isinstance(r, Malformed)}


def test_read__yields_the_rows_in_id_order_with_their_locators_and_metadata(
    database: Database,
) -> None:
    database.table("docs", list(reversed(GOOD_ROWS)))
    source = open_source("sql:docs")

    records = read_all(source)

    assert records == [
        Document("a-1", "first text", {"lang": "en"}),
        Document("a-2", "second text", {}),
        Document("a-3", "third text", {}),
    ]
    assert [r.locator for r in records] == ["id=a-1", "id=a-2", "id=a-3"]
    assert source.count() == 3


def test_read__takes_renamed_columns_from_the_spec(database: Database) -> None:
    database.table("articles", GOOD_ROWS, ("slug", "body", "tags"))

    records = read_all(open_source("sql:articles(id=slug,text=body,metadata=tags)"))

    assert [(d.id, d.text) for d in documents(records)] == [(r[0], r[1]) for r in GOOD_ROWS]


def test_read__without_a_metadata_column_gives_empty_metadata(database: Database) -> None:
    database.execute("drop table if exists plain")
    database.execute("create table plain (id text primary key, text text)")
    database.execute("insert into plain (id, text) values ('p-1', 'plain text')")

    assert read_all(open_source("sql:plain")) == [Document("p-1", "plain text", {})]


def test_read__turns_each_bad_row_into_a_malformed_record_that_says_why(
    database: Database,
) -> None:
    database.table("mixed", GOOD_ROWS + BAD_ROWS)
    source = open_source("sql:mixed")

    records = read_all(source, batch=3)

    assert len(records) == source.count() == len(GOOD_ROWS) + len(BAD_ROWS)
    assert [d.id for d in documents(records)] == ["a-1", "a-2", "a-3"]
    assert reasons(records) == {
        "id=''": "id='': 'id' must be a non-empty string",
        "id=b-broken-metadata": "id=b-broken-metadata: 'metadata' must be a JSON object",
        "id=b-list-metadata": "id=b-list-metadata: 'metadata' must be an object",
        "id=b-null-text": "id=b-null-text: 'text' must be a non-empty string",
    }
    null_text = next(
        r for r in records if isinstance(r, Malformed) and r.locator == "id=b-null-text"
    )
    assert null_text.id == "b-null-text (id=b-null-text)"  # never the id of a written document
    assert json.loads(null_text.raw) == {"id": "b-null-text", "text": None, "metadata": "{}"}


def test_read__reports_null_ids_and_repeated_ids_without_losing_a_row(database: Database) -> None:
    rows = [("d-1", "one", None), (None, "no id", None)]
    rows += [("d-2", f"copy {n}", None) for n in range(5)] + [("d-3", "three", None)]
    database.table("loose", rows, unique=False)
    source = open_source("sql:loose")

    records = read_all(source, batch=2)  # the five d-2 rows straddle any batch boundary

    assert len(records) == source.count() == 8
    assert [d.id for d in documents(records)] == ["d-1", "d-2", "d-3"]
    bad = [r for r in records if isinstance(r, Malformed)]
    assert [r.reason for r in bad] == ["row 1 with a NULL id: 'id' must not be NULL"] + [
        "id=d-2: duplicate id 'd-2'"
    ] * 4


def test_read__a_postgres_jsonb_metadata_column_is_read_as_an_object(
    postgres_url: str, settings: Any
) -> None:
    database = _postgres(postgres_url)
    use_url(settings, postgres_url)
    database.table(
        "typed", [("j-1", "text", '{"n": 1}'), ("j-2", "text", "[]")], metadata_type="jsonb"
    )

    records = read_all(open_source("sql:typed"))

    assert records[0] == Document("j-1", "text", {"n": 1})
    assert reasons(records) == {"id=j-2": "id=j-2: 'metadata' must be an object"}


def test_resume__continues_after_the_last_id_of_its_checkpoint(database: Database) -> None:
    rows = [(f"r-{i:03d}", f"text {i}", None) for i in range(25)] + [(None, "no id", None)]
    database.table("many", rows, unique=False)
    source = open_source("sql:many")
    whole = read_all(source, batch=100)

    # Read one batch at a time, each from a reader opened fresh at the previous checkpoint.
    resumed: list[Record] = []
    checkpoint: dict[str, Any] = {}
    while True:
        reader = source.open(checkpoint)
        batch = reader.read_batch(4)
        checkpoint = reader.checkpoint()
        reader.close()
        if not batch:
            break
        resumed.extend(batch)

    assert resumed == whole and len(whole) == 26
    assert checkpoint == {"null_ids": 1, "last_id": "r-024"}


def test_read__a_row_changed_behind_the_cursor_is_missed_until_the_next_run(
    database: Database,
) -> None:
    database.table("moving", [("m-1", "one", None), ("m-3", "three", None)])
    source = open_source("sql:moving")
    reader = source.open()
    first = reader.read_batch(1)
    database.execute("insert into moving (id, text) values ('m-0', 'behind the cursor')")
    database.execute("insert into moving (id, text) values ('m-2', 'ahead of the cursor')")
    rest = reader.read_batch(10)
    reader.close()

    assert [r.id for r in first + rest] == ["m-1", "m-2", "m-3"]
    assert [r.id for r in read_all(source)] == ["m-0", "m-1", "m-2", "m-3"]


def test_read__a_dropped_connection_is_retried_and_counted(
    postgres_url: str, settings: Any
) -> None:
    database = _postgres(postgres_url)
    use_url(settings, postgres_url)
    database.table("blink", [(f"k-{i}", "text", None) for i in range(6)])
    reader = open_source("sql:blink").open()
    first = reader.read_batch(2)
    assert isinstance(reader, SqlReader)
    # The server ends the reader's session, as a restart or a failover does.
    database.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    )
    rest = reader.read_batch(10)
    reader.close()

    assert [r.id for r in first + rest] == [f"k-{i}" for i in range(6)]
    assert reader.retries == 1


def test_read__an_unreachable_server_trips_the_breaker_into_source_unavailable(
    settings: Any,
) -> None:
    use_url(settings, UNREACHABLE_URL)
    source = open_source("sql:docs")  # not refused: a server that is down may come back

    with pytest.raises(SourceUnavailable, match="unreachable: 12 transient failures in a row"):
        source.count()
    reader = source.open()
    with pytest.raises(SourceUnavailable, match="REINDEXER_SQL_SOURCE_URL is unreachable"):
        reader.read_batch(5)
    reader.close()


def test_spec__is_refused_while_the_setting_is_unset(settings: Any) -> None:
    use_url(settings, None)

    with pytest.raises(SpecError, match="REINDEXER_SQL_SOURCE_URL, which is not set"):
        open_source("sql:docs")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sql:nope", "table 'nope' does not exist"),
        (
            "sql:docs(text=body)",
            "table 'docs' has no column 'body' \\(it has: id, text, metadata\\)",
        ),
        ("sql:docs(metadata=tags)", "has no column 'tags'"),
        ("sql:docs(colour=red)", "unknown option 'colour'"),
        ("sql:docs(id=id,id=text)", "option 'id' is given twice"),
        ("sql:docs;drop table docs", "table 'docs;drop table docs' must be a plain SQL name"),
        ('sql:docs(id=id"--)', "id column 'id\"--' must be a plain SQL name"),
        ("sql:docs(text=text from docs;--)", "must be a plain SQL name"),
        ("sql:", "table '' must be a plain SQL name"),
    ],
)
def test_spec__refuses_what_the_database_does_not_have_or_a_hostile_name(
    database: Database, spec: str, message: str
) -> None:
    database.table("docs", GOOD_ROWS)

    with pytest.raises(SpecError, match=message):
        open_source(spec)
    assert len(read_all(open_source("sql:docs"))) == len(GOOD_ROWS)  # the table is untouched


def test_spec__a_missing_sqlite_file_is_refused_and_not_created(
    tmp_path: Path, settings: Any
) -> None:
    path = tmp_path / "absent.sqlite3"
    use_url(settings, f"sqlite:///{path}")

    with pytest.raises(SpecError, match="cannot open the database at REINDEXER_SQL_SOURCE_URL"):
        open_source("sql:docs")
    assert not path.exists()


def test_resume__integer_ids_keep_the_databases_numeric_order_across_checkpoints(
    database: Database,
) -> None:
    database.execute("drop table if exists numbered")
    database.execute("create table numbered (id integer primary key, text text)")
    database.execute(
        "insert into numbered (id, text) values (10, 'ten'), (2, 'two'), (1, 'one'), (33, 'x')"
    )
    source = open_source("sql:numbered")

    reader = source.open()
    first = reader.read_batch(2)
    checkpoint = reader.checkpoint()
    reader.close()
    reader = source.open(checkpoint)
    rest = list(reader)
    reader.close()

    assert checkpoint["last_id"] == 2  # kept as the column's own type, so `id > 2` is numeric
    assert [r.id for r in first + rest] == ["1", "2", "10", "33"]


def test_excerpt__a_sql_failure_says_the_source_has_no_lines(database: Database) -> None:
    database.table("docs", GOOD_ROWS)
    failing = FailingRecord("sql:docs", "id=a-1", ["a-1"], "ValueError", "first text")

    shown = excerpt(failing)

    assert shown.lines == []
    assert shown.problem == "A sql source has no lines to show: it reads table docs."
