"""Sliced sources: `split(n)` cuts a JSONL file, a directory or a `sql:` table (SQLite and
PostgreSQL) into ranges that together yield every record once, in source order, and a reader
opened on one range (`open(bounds=...)`) reads, counts and resumes that range alone."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.documents import Document, Malformed, Record
from reindexer.errors import SourceUnavailable
from reindexer.sources import Source, open_source
from reindexer.sources.base import SourceSlice
from tests.sql_databases import Run, postgres_runner, sqlite_runner, throwaway_postgres

# A port nothing listens on: connections are refused at once.
UNREACHABLE_URL = "postgres://postgres@127.0.0.1:1/nowhere"
KINDS = ["jsonl", "directory", "sql-sqlite", "sql-postgres"]

# Writes a source of `n` records (every fifth one malformed) and gives its spec.
MakeSource = Callable[[int], str]


def is_bad(i: int) -> bool:
    return i % 5 == 3


def stored(value: dict[str, Any]) -> dict[str, Any]:
    """`value` as it comes back from a JSON column (a slice's bounds, a checkpoint)."""
    loaded: dict[str, Any] = json.loads(json.dumps(value))
    return loaded


def shown(records: list[Record]) -> list[tuple[str, str, str]]:
    """What tells records apart: kind, id and locator (and a malformed one's reason)."""
    return [
        ("doc", r.id, r.locator) if isinstance(r, Document) else ("bad", r.id, r.reason)
        for r in records
    ]


def read_whole(source: Source) -> list[Record]:
    reader = source.open()
    try:
        return list(reader)
    finally:
        reader.close()


def read_range(
    source: Source,
    bounds: dict[str, Any],
    checkpoint: dict[str, Any] | None = None,
    *,
    batch: int = 4,
) -> list[Record]:
    """Every record of one slice, read in batches as the engine reads them."""
    reader = source.open(checkpoint or None, bounds=stored(bounds))
    try:
        records: list[Record] = []
        while got := reader.read_batch(batch):
            records.extend(got)
        return records
    finally:
        reader.close()


def read_head(
    source: Source, bounds: dict[str, Any], n: int
) -> tuple[list[Record], dict[str, Any]]:
    """The first `n` records of a slice (one batch) and the checkpoint just after them."""
    reader = source.open(None, bounds=stored(bounds))
    try:
        return reader.read_batch(n), stored(reader.checkpoint())
    finally:
        reader.close()


def read_slices(source: Source, parts: list[SourceSlice]) -> list[list[Record]]:
    return [read_range(source, part.bounds) for part in parts]


# -- the sources -----------------------------------------------------------------------------


def use_sql_url(settings: Any, url: str) -> None:
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER, sql_source_url=url, retry_backoff_seconds=0.001
    )


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def jsonl_maker(data_dir: Path) -> MakeSource:
    def make(n: int) -> str:
        with (data_dir / "docs.jsonl").open("w", encoding="utf-8") as f:
            for i in range(n):
                if i % 7 == 6:
                    f.write("\n  \n")  # blank lines are no records, wherever they fall
                bad = f"not json {i}"
                f.write((bad if is_bad(i) else json.dumps({"id": f"doc-{i}", "text": "t"})) + "\n")
        return "jsonl:docs.jsonl"

    return make


def directory_maker(data_dir: Path) -> MakeSource:
    def make(n: int) -> str:
        root = data_dir / "notes"
        root.mkdir()
        for i in range(n):
            folder = root / f"part-{i % 3}"
            folder.mkdir(exist_ok=True)
            (folder / f"note-{i:02}.md").write_text("" if is_bad(i) else f"note number {i}")
        return "directory:notes"

    return make


def sql_maker(run: Run) -> MakeSource:
    def make(n: int) -> str:
        create_docs_table(run)
        # Inserted backwards: the order read is the id's, not the table's.
        rows = [(f"r-{i:03}", None if is_bad(i) else f"text {i}", None) for i in range(n)]
        insert_docs(run, list(reversed(rows)))
        return "sql:docs"

    return make


def create_docs_table(run: Run) -> None:
    run("drop table if exists docs", [])
    # Neither a primary key nor NOT NULL: NULL ids and repeated ids can be stored.
    run("create table docs (id text, text text, metadata text)", [])
    run("create index docs_by_id on docs (id)", [])


def insert_docs(run: Run, rows: list[tuple[Any, Any, Any]]) -> None:
    if rows:
        run("insert into docs (id, text, metadata) values (?, ?, ?)", rows)


@pytest.fixture
def sql_run(request: pytest.FixtureRequest, data_dir: Path, settings: Any, backend: str) -> Run:
    """A runner of statements against the sql source database of `backend`, now the source's."""
    if backend == "sqlite":
        path = data_dir / "source.sqlite3"
        use_sql_url(settings, f"sqlite:///{path}")
        return sqlite_runner(path)
    url: str = request.getfixturevalue("postgres_url")
    use_sql_url(settings, url)
    return postgres_runner(url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(params=KINDS)
def make_source(request: pytest.FixtureRequest, data_dir: Path, settings: Any) -> MakeSource:
    kind: str = request.param
    if kind == "jsonl":
        return jsonl_maker(data_dir)
    if kind == "directory":
        return directory_maker(data_dir)
    if kind == "sql-sqlite":
        path = data_dir / "source.sqlite3"
        use_sql_url(settings, f"sqlite:///{path}")
        return sql_maker(sqlite_runner(path))
    url: str = request.getfixturevalue("postgres_url")
    use_sql_url(settings, url)
    return sql_maker(postgres_runner(url))


# -- every source ----------------------------------------------------------------------------


@pytest.mark.parametrize("slices", [1, 2, 3, 5])
def test_split__the_slices_together_yield_every_record_once_in_source_order(
    make_source: MakeSource, slices: int
) -> None:
    source = open_source(make_source(23))
    whole = read_whole(source)

    parts = source.split(slices)
    read = read_slices(source, parts)

    assert len(parts) == slices
    assert shown([r for records in read for r in records]) == shown(whole)
    assert [len(records) for records in read] == [part.count for part in parts]
    assert sum(part.count for part in parts) == source.count() == len(whole) == 23
    counts = [part.count for part in parts]
    assert max(counts) - min(counts) <= 1  # nearly equal shares
    assert any(isinstance(r, Malformed) for r in whole)  # the bad ones are cut like the rest


def test_split__a_slice_resumed_from_a_mid_slice_checkpoint_yields_only_the_rest_of_it(
    make_source: MakeSource,
) -> None:
    source = open_source(make_source(23))
    parts = source.split(3)
    slices = read_slices(source, parts)

    for part, records in zip(parts, slices, strict=True):
        for n in sorted({1, part.count // 2, part.count - 1}):
            head, checkpoint = read_head(source, part.bounds, n)
            rest = read_range(source, part.bounds, checkpoint)
            assert shown(head) == shown(records[:n])
            assert shown(rest) == shown(records[n:]), f"resumed after {n} of {part.bounds}"


def test_split__more_slices_than_records_gives_one_slice_per_record(
    make_source: MakeSource,
) -> None:
    source = open_source(make_source(3))

    parts = source.split(8)

    assert [part.count for part in parts] == [1, 1, 1]
    assert shown([r for records in read_slices(source, parts) for r in records]) == shown(
        read_whole(source)
    )


def test_split__an_empty_source_gives_one_slice_that_yields_nothing(
    make_source: MakeSource,
) -> None:
    source = open_source(make_source(0))

    parts = source.split(4)

    assert [part.count for part in parts] == [0]
    assert read_range(source, parts[0].bounds) == []


def test_split__a_checkpoint_at_the_end_of_a_slice_yields_nothing_more(
    make_source: MakeSource,
) -> None:
    source = open_source(make_source(10))
    parts = source.split(2)

    head, checkpoint = read_head(source, parts[0].bounds, parts[0].count)

    assert len(head) == parts[0].count
    assert read_range(source, parts[0].bounds, checkpoint) == []


# -- JSONL -----------------------------------------------------------------------------------


def write_lines(data_dir: Path, lines: list[str]) -> Source:
    (data_dir / "docs.jsonl").write_text("".join(line + "\n" for line in lines))
    return open_source("jsonl:docs.jsonl")


def doc(doc_id: str) -> str:
    return json.dumps({"id": doc_id, "text": f"text of {doc_id}"})


@pytest.mark.parametrize(
    ("lines", "second_starts_at"),
    [
        # The malformed line opens the second slice, right after blank lines.
        ([doc("a"), "", doc("b"), "   ", "", "{not json", "", doc("c")], 5),
        # It ends the first slice, with blank lines on both sides.
        ([doc("a"), "", "{not json", "", "  ", doc("b"), doc("c")], 5),
    ],
    ids=["opening-a-slice", "ending-a-slice"],
)
def test_jsonl_split__blank_lines_and_a_malformed_line_at_a_cut_are_read_once_in_place(
    data_dir: Path, lines: list[str], second_starts_at: int
) -> None:
    source = write_lines(data_dir, lines)

    parts = source.split(2)
    first, second = read_slices(source, parts)

    assert [part.count for part in parts] == [2, 2]
    assert shown(first + second) == shown(read_whole(source))
    bad = [r for r in first + second if isinstance(r, Malformed)]
    assert [r.locator for r in bad] == [f"line {lines.index('{not json') + 1}"]
    # The second slice starts at its first record: the blank lines before it are the first's.
    assert parts[1].bounds["start"]["line"] == second_starts_at
    assert second[0].locator == f"line {second_starts_at + 1}"


def test_jsonl_split__a_file_of_blank_lines_gives_one_slice_that_yields_nothing(
    data_dir: Path,
) -> None:
    source = write_lines(data_dir, ["", "  ", "\t", ""])

    parts = source.split(3)

    assert [part.count for part in parts] == [0]
    assert read_range(source, parts[0].bounds) == []


def test_jsonl_split__a_duplicate_of_an_id_in_an_earlier_slice_is_still_malformed(
    data_dir: Path,
) -> None:
    source = write_lines(data_dir, [doc(i) for i in "abcdef"] + [doc("b"), doc("g"), doc("f")])
    parts = source.split(3)  # a b c | d e f | b g f

    last = read_range(source, parts[2].bounds)
    # Resumed after its first record, the slice still knows the ids before it.
    _, checkpoint = read_head(source, parts[2].bounds, 1)
    resumed = read_range(source, parts[2].bounds, checkpoint)

    assert shown(last) == shown(read_whole(source))[6:]
    assert [type(r) for r in last] == [Malformed, Document, Malformed]
    assert [r.reason for r in last if isinstance(r, Malformed)] == [
        "line 7: duplicate id 'b'",
        "line 9: duplicate id 'f'",
    ]
    assert shown(resumed) == shown(last[1:])


# -- directory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "added",
    ["0-before-all.md", "part-0/note-06.5.md", "part-1/note-00.md", "part-1/z.md", "zz-last.md"],
)
def test_directory_split__a_file_added_between_split_and_read_is_read_by_exactly_one_slice(
    data_dir: Path, added: str
) -> None:
    spec = directory_maker(data_dir)(12)
    source = open_source(spec)
    parts = source.split(3)
    before = [shown(records) for records in read_slices(source, parts)]

    (data_dir / "notes" / added).write_text("a new note")
    after = [shown(records) for records in read_slices(source, parts)]

    holding = [n for n, records in enumerate(after) if ("doc", added, added) in records]
    assert len(holding) == 1, f"{added} read by slices {holding}"
    after[holding[0]].remove(("doc", added, added))
    assert after == before  # and nothing else moved


# -- sql -------------------------------------------------------------------------------------


def test_sql_split__null_ids_are_read_and_counted_by_the_first_slice_only(sql_run: Run) -> None:
    create_docs_table(sql_run)
    rows: list[tuple[Any, Any, Any]] = [(f"r-{i:02}", f"text {i}", None) for i in range(10)]
    insert_docs(sql_run, rows[:4] + [(None, "no id", None)] * 3 + rows[4:])
    source = open_source("sql:docs")

    parts = source.split(3)
    slices = read_slices(source, parts)

    assert [part.count for part in parts] == [4, 4, 5]  # the 13 rows, NULL ids first
    nulls = [
        [r for r in records if isinstance(r, Malformed) and "NULL" in r.reason]
        for records in slices
    ]
    assert [len(found) for found in nulls] == [3, 0, 0]
    assert shown([r for records in slices for r in records]) == shown(read_whole(source))
    # Resumed among its NULL ids, the first slice gives the last of them, then its ids.
    _, checkpoint = read_head(source, parts[0].bounds, 2)
    rest = read_range(source, parts[0].bounds, checkpoint)
    assert shown(rest) == shown(slices[0][2:])
    assert [r.locator for r in rest] == ["row 3 with a NULL id", "id=r-00"]


def test_sql_split__a_table_of_null_ids_only_is_one_slice(sql_run: Run) -> None:
    create_docs_table(sql_run)
    insert_docs(sql_run, [(None, "no id", None)] * 4)
    source = open_source("sql:docs")

    parts = source.split(3)

    assert [part.count for part in parts] == [4]
    assert len(read_range(source, parts[0].bounds)) == 4


def test_sql_split__equal_ids_are_never_cut_apart_and_repeats_stay_malformed(
    sql_run: Run,
) -> None:
    create_docs_table(sql_run)
    rows: list[tuple[Any, Any, Any]] = [("d-1", "one", None)]
    rows += [("d-2", f"copy {n}", None) for n in range(6)] + [("d-3", "three", None)]
    rows += [("d-4", f"copy {n}", None) for n in range(2)]
    insert_docs(sql_run, rows)
    source = open_source("sql:docs")

    parts = source.split(4)
    slices = read_slices(source, parts)

    # Cut at the 2nd, 5th and 7th rows, all copies of d-2: one cut is left.
    assert [part.count for part in parts] == [7, 3]
    assert [len(records) for records in slices] == [7, 3]
    assert shown([r for records in slices for r in records]) == shown(read_whole(source))
    holding = [{r.id.split(" ")[0] for r in records} for records in slices]
    for doc_id in ("d-1", "d-2", "d-3", "d-4"):
        assert sum(doc_id in ids for ids in holding) == 1, f"{doc_id} cut apart: {holding}"


def test_sql_split__integer_ids_keep_their_json_type_and_the_databases_order(
    sql_run: Run,
) -> None:
    sql_run("drop table if exists numbered", [])
    sql_run("create table numbered (id integer primary key, text text)", [])
    numbers = [2, 10, 33, 1, 100, 7, 20, 3, 9]
    sql_run("insert into numbered (id, text) values (?, ?)", [(n, f"n{n}") for n in numbers])
    source = open_source("sql:numbered")

    parts = source.split(3)
    slices = read_slices(source, parts)

    assert [part.bounds for part in parts] == [
        {"after": None, "upto": 3},
        {"after": 3, "upto": 10},
        {"after": 10, "upto": None},
    ]
    assert [[r.id for r in records] for records in slices] == [
        ["1", "2", "3"],
        ["7", "9", "10"],
        ["20", "33", "100"],
    ]


# Before every id, just below and just above the first cut (r-004), after every id.
@pytest.mark.parametrize("added", ["a-first", "r-0039", "r-0041", "z-last"])
def test_sql_split__a_row_added_after_the_split_is_read_by_exactly_one_slice(
    sql_run: Run, added: str
) -> None:
    sql_maker(sql_run)(15)  # r-000 .. r-014
    source = open_source("sql:docs")
    parts = source.split(3)
    before = [shown(records) for records in read_slices(source, parts)]

    insert_docs(sql_run, [(added, "a new row", None)])
    after = [shown(records) for records in read_slices(source, parts)]

    row = ("doc", added, f"id={added}")
    holding = [n for n, records in enumerate(after) if row in records]
    assert len(holding) == 1, f"{added} read by slices {holding}"
    after[holding[0]].remove(row)
    assert after == before


def test_sql_split__an_unreachable_server_is_retried_then_reported_unavailable(
    settings: Any,
) -> None:
    use_sql_url(settings, UNREACHABLE_URL)
    source = open_source("sql:docs")  # not refused: a server that is down may come back

    with pytest.raises(SourceUnavailable, match="unreachable: 12 transient failures in a row"):
        source.split(3)
