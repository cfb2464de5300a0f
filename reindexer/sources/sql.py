"""`sql:TABLE(id=COL,text=COL,metadata=COL)`: the rows of a table of the database at
REINDEXER_SQL_SOURCE_URL (PostgreSQL or SQLite), read by keyset pagination on the id column.

The checkpoint is the last id handed out, so a resume reads `WHERE id > last ORDER BY id`, in the
database's own order of that column. A row inserted or changed behind the cursor (an id at or
below the checkpoint) while a job runs is missed until the next run; a row ahead of it is read as
it is when its page is fetched.

A sliced job reads id ranges `after < id <= upto` (`after` null for the first, `upto` null for the
last), cut by the database's own order too, so every row, one added since the split included,
falls in exactly one range. The rows with a NULL id are the first range's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import apsw
import dj_database_url
import psycopg

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.batching import RetryPolicy
from reindexer.documents import Document, Malformed, Record, preview_of
from reindexer.errors import SourceUnavailable, SpecError, is_transient
from reindexer.sources.base import Bounds, Checkpoint, SourceSlice

logger = logging.getLogger(__name__)

SETTING = "REINDEXER_SQL_SOURCE_URL"
COLUMN_ROLES = ("id", "text", "metadata")
# Rows fetched per query when iterating (verify); the engine's pages are its batch size.
PAGE_ROWS = 500
CONNECT_TIMEOUT_SECONDS = 5
# A plain SQL identifier, optionally schema-qualified: anything else is refused, never quoted in.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

T = TypeVar("T")
Row = tuple[Any, ...]


def _checked_identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise SpecError(
            f"sql: {what} {value!r} must be a plain SQL name (letters, digits, _)", field="source"
        )
    return value


def quoted(identifier: str) -> str:
    """`identifier`, already checked against _IDENTIFIER, quoted for PostgreSQL and SQLite."""
    return '"' + identifier.replace('"', '""') + '"'


class SqlConnection:
    """One connection to the source database; queries use `?` placeholders on both drivers."""

    def __init__(self, url: str) -> None:
        scheme = urlsplit(url).scheme
        self._postgres = scheme in {"postgres", "postgresql"}
        if self._postgres:
            self._pg: psycopg.Connection[Row] | None = psycopg.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
            self._lite: apsw.Connection | None = None
        elif scheme == "sqlite":
            name = str(dj_database_url.parse(url)["NAME"])
            # Read only: a missing file is an error, never a new empty database.
            self._lite = apsw.Connection(name, flags=apsw.SQLITE_OPEN_READONLY)
            self._lite.setbusytimeout(CONNECT_TIMEOUT_SECONDS * 1000)
            self._pg = None
        else:
            raise SpecError(
                f"{SETTING} must be a postgres:// or sqlite:/// URL, not {scheme or 'a bare'}:",
                field="source",
            )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._pg is not None:
            with self._pg.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall())
        if self._lite is None:
            raise SourceUnavailable("the source database connection is closed")
        return [tuple(row) for row in self._lite.execute(sql, tuple(params))]

    def columns(self, table: str) -> list[str]:
        """The columns of `table`, in order; none when there is no such table."""
        if self._pg is not None:
            rows = self.query(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?"
                " ORDER BY ordinal_position",
                (table,),
            )
        else:
            rows = self.query("SELECT name FROM pragma_table_info(?)", (table,))
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._lite is not None:
            self._lite.close()


@dataclass(frozen=True)
class SqlOptions:
    """The table and its column names; the connection comes from the settings, never the spec."""

    spec: str
    # Kept out of repr: the URL may hold a password, and options can end up in a log.
    url: str = field(repr=False)
    table: str
    id_column: str = "id"
    text_column: str = "text"
    # None: the table has no metadata column (only allowed when the spec does not name one).
    metadata_column: str | None = "metadata"

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        url = conf.get().sql_source_url
        if not url:
            raise SpecError(
                f"sql: sources read the database at {SETTING}, which is not set", field="source"
            )
        table = _checked_identifier(spec.arg, "table")
        named: dict[str, str] = {}
        for key, value in spec.pairs():
            if key not in COLUMN_ROLES:
                raise SpecError(
                    f"sql: unknown option {key!r}; the options are id=, text= and metadata=",
                    field="source",
                )
            if key in named:
                raise SpecError(f"sql: option {key!r} is given twice", field="source")
            named[key] = _checked_identifier(value, f"{key} column")
        options = cls(
            spec.text,
            url,
            table,
            named.get("id", "id"),
            named.get("text", "text"),
            named.get("metadata", "metadata"),
        )
        return options._checked_against_schema(explicit_metadata="metadata" in named)

    def _checked_against_schema(self, *, explicit_metadata: bool) -> Self:
        """Refuse a table or column that does not exist. A server that cannot be reached now is
        not refused: it is transient, and the job retries it while it runs."""
        try:
            connection = SqlConnection(self.url)
        except SpecError:
            raise
        except Exception as exc:
            if is_transient(exc):
                logger.warning("sql source: cannot check %s now: %s", self.table, exc)
                return self
            raise SpecError(
                f"sql: cannot open the database at {SETTING}: {type(exc).__name__}: {exc}",
                field="source",
            ) from exc
        try:
            columns = connection.columns(self.table)
        except Exception as exc:
            if is_transient(exc):
                return self
            raise SpecError(
                f"sql: cannot read the columns of table {self.table!r}: {exc}", field="source"
            ) from exc
        finally:
            connection.close()
        if not columns:
            raise SpecError(
                f"sql: table {self.table!r} does not exist in the database at {SETTING}",
                field="source",
            )
        for column in (self.id_column, self.text_column):
            if column not in columns:
                raise self._no_column(column, columns)
        if self.metadata_column not in columns:
            if explicit_metadata:
                raise self._no_column(str(self.metadata_column), columns)
            return dataclasses.replace(self, metadata_column=None)
        return self

    def _no_column(self, column: str, columns: list[str]) -> SpecError:
        return SpecError(
            f"sql: table {self.table!r} has no column {column!r} (it has: {', '.join(columns)})",
            field="source",
        )

    def count_all(self) -> str:
        return f"SELECT count(*) FROM {quoted(self.table)}"  # noqa: S608 - a checked identifier

    def queries(self) -> RowQueries:
        """The reader's statements. Only identifiers checked against _IDENTIFIER and quoted are
        put in; every value is a parameter."""
        table, id_column = quoted(self.table), quoted(self.id_column)
        metadata = quoted(self.metadata_column) if self.metadata_column else "NULL"
        # The columns in the order `_row_record` takes them.
        select = f"SELECT {id_column}, {quoted(self.text_column)}, {metadata} FROM {table}"  # noqa: S608
        return RowQueries(
            select=select,
            id_column=id_column,
            same_id=f"{select} WHERE {id_column} = ?",
            null_ids=f"SELECT count(*) FROM {table} WHERE {id_column} IS NULL",  # noqa: S608
        )

    def split_queries(self) -> SplitQueries:
        table, id_column = quoted(self.table), quoted(self.id_column)
        return SplitQueries(
            # count(id) leaves out the NULL ids.
            counts=f"SELECT count(*), count({id_column}) FROM {table}",  # noqa: S608
            id_column=id_column,
            table=table,
        )


@dataclass(frozen=True)
class RowQueries:
    """Keyset pagination by id, never OFFSET: each page starts after the last id fetched."""

    select: str
    id_column: str
    same_id: str
    null_ids: str

    def page(self, *, after: bool, upto: bool) -> str:
        """The next page: after an id (else from the first), up to an id (else to the end)."""
        column = self.id_column
        where = [f"{column} > ?" if after else f"{column} IS NOT NULL"]
        if upto:
            where.append(f"{column} <= ?")
        return f"{self.select} WHERE {' AND '.join(where)} ORDER BY {column} LIMIT ?"


@dataclass(frozen=True)
class SplitQueries:
    """The statements that cut a table into id ranges, each one pass the database plans well."""

    counts: str
    id_column: str
    table: str

    def cuts(self, positions: int) -> str:
        """For each of `positions` row numbers (1-based, in id order, NULL ids left out): the id
        there, and how many rows have an id at or below it (its equal ids included: the default
        window frame of `count(*)` takes every peer of the row)."""
        column = self.id_column
        wanted = ", ".join("?" * positions)
        return (
            f"SELECT cut_id, rows_upto FROM (SELECT {column} AS cut_id,"  # noqa: S608
            f" row_number() OVER (ORDER BY {column}) AS position,"
            f" count(*) OVER (ORDER BY {column}) AS rows_upto"
            f" FROM {self.table} WHERE {column} IS NOT NULL) AS numbered"
            f" WHERE position IN ({wanted}) ORDER BY position"
        )


def row_locator(doc_id: str) -> str:
    """Where a row is: `id=doc-5`."""
    return f"id={doc_id}" if doc_id else "id=''"


def _row_preview(doc_id: Any, text: Any, metadata: Any) -> str:
    shown = {"id": doc_id, "text": text, "metadata": metadata}
    return preview_of(json.dumps(shown, default=str, ensure_ascii=False))


def _row_record(row: Row) -> Record:
    """A Document for a well-formed row, else a Malformed saying why (the JSONL record rules)."""
    raw_id, text, metadata = row

    def malformed(reason: str, doc_id: str = "") -> Malformed:
        locator = row_locator(doc_id)
        failure_id = f"{doc_id} ({locator})" if doc_id else locator
        return Malformed(
            failure_id, locator, f"{locator}: {reason}", _row_preview(raw_id, text, metadata)
        )

    doc_id = "" if isinstance(raw_id, bytes | bytearray) else str(raw_id)
    if not doc_id:
        return malformed("'id' must be a non-empty string")
    if "\x00" in doc_id:
        return malformed("'id' must not contain a NUL character")
    if not isinstance(text, str) or not text or text.isspace():
        return malformed("'text' must be a non-empty string", doc_id)
    if metadata is None:
        metadata = {}
    elif isinstance(metadata, str):  # JSON text (SQLite, or a text column in PostgreSQL)
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return malformed("'metadata' must be a JSON object", doc_id)
    if not isinstance(metadata, dict):
        return malformed("'metadata' must be an object", doc_id)
    return Document(doc_id, text, metadata, row_locator(doc_id))


def _checkpoint_value(raw_id: Any) -> Any:
    """An id as a JSON checkpoint keeps it, and gives it back as the `id > ?` parameter."""
    return raw_id if isinstance(raw_id, int | str) else str(raw_id)


class SqlSource:
    def __init__(self, options: SqlOptions) -> None:
        self.spec = options.spec
        self.options = options

    def count(self) -> int:
        with _Database(self.options.url) as db:
            rows = db.run(lambda c: c.query(self.options.count_all()))
        return int(rows[0][0])

    def split(self, slices: int) -> list[SourceSlice]:
        """Id ranges of nearly equal row counts, cut where the database's id order puts them.

        The NULL ids (read first, by the first range) count as the first rows. Equal ids are
        never cut apart, so with many of them a range may hold more rows, and there may be fewer
        ranges. Two queries: the counts, then every cut and its running count in one window pass.
        """
        queries = self.options.split_queries()
        with _Database(self.options.url) as db:
            total, with_id = (int(n) for n in db.run(lambda c: c.query(queries.counts))[0])
            nulls = total - with_id
            parts = max(1, min(slices, total))
            # Slice k+1 starts at row total*k//parts, NULL ids first: the slice before it ends
            # at the id in that row. A cut among the NULL ids is no cut at all.
            positions = [total * k // parts - nulls for k in range(1, parts)]
            positions = [p for p in positions if p >= 1]
            rows = (
                db.run(lambda c: c.query(queries.cuts(len(positions)), positions))
                if positions
                else []
            )
        return _id_ranges(rows, nulls, with_id)

    def open(
        self, checkpoint: Checkpoint | None = None, *, bounds: Bounds | None = None
    ) -> SqlReader:
        return SqlReader(self.options, checkpoint or {}, bounds)


def _id_ranges(cuts: list[Row], nulls: int, with_id: int) -> list[SourceSlice]:
    """The ranges between the cut ids (each with the rows at or below it), NULL ids in the
    first; a cut that repeats the one before, or leaves nothing after it, is dropped."""
    kept: list[tuple[Any, int]] = []
    for cut_id, rows_upto in cuts:
        if (not kept or cut_id != kept[-1][0]) and int(rows_upto) < with_id:
            kept.append((cut_id, int(rows_upto)))
    afters: list[Any] = [None] + [_checkpoint_value(cut_id) for cut_id, _ in kept]
    uptos: list[Any] = afters[1:] + [None]
    below = [0] + [rows_upto for _, rows_upto in kept] + [with_id]
    counts = [b - a for a, b in itertools.pairwise(below)]
    counts[0] += nulls
    return [
        SourceSlice({"after": after, "upto": upto}, count)
        for after, upto, count in zip(afters, uptos, counts, strict=True)
    ]


class _Database:
    """A connection that is opened lazily and reopened after a transient error, which is retried
    with backoff; after `breaker_threshold` in a row the source counts as unreachable."""

    def __init__(self, url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = url
        self._connection: SqlConnection | None = None
        self._policy = RetryPolicy(backoff_seconds=conf.get().retry_backoff_seconds)
        self._sleep = sleep
        self._rng = random.Random()  # noqa: S311 - jitter, not crypto
        self.retries = 0

    def run(self, call: Callable[[SqlConnection], T]) -> T:
        consecutive = 0
        while True:
            try:
                if self._connection is None:
                    self._connection = SqlConnection(self._url)
                return call(self._connection)
            except SpecError:
                raise
            except Exception as exc:
                self.close()
                if not is_transient(exc):
                    raise SourceUnavailable(
                        f"cannot read the database at {SETTING}: {type(exc).__name__}: {exc}"
                    ) from exc
                consecutive += 1
                if consecutive >= self._policy.breaker_threshold:
                    raise SourceUnavailable(
                        f"the database at {SETTING} is unreachable: {consecutive} transient"
                        f" failures in a row, last: {type(exc).__name__}: {exc}"
                    ) from exc
                self.retries += 1
                logger.warning("sql source: retry %d after %s: %s", consecutive, type(exc), exc)
                self._sleep(self._policy.delay(consecutive, self._rng))

    def close(self) -> None:
        if self._connection is not None:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqlReader:
    """Hands out rows in id order, within `bounds` when it reads one range of a sliced job. Rows
    with a NULL id cannot be paged by id: they come first (in the first range), each as a
    Malformed record, so the count (`count(*)`) and what is read agree.

    Equal ids (a table whose id is not unique) are kept on one page and in one batch, so a page
    boundary never skips one; all but the first well-formed row of an id are duplicates.
    """

    def __init__(
        self, options: SqlOptions, checkpoint: Checkpoint, bounds: Bounds | None = None
    ) -> None:
        self._options = options
        self._db = _Database(options.url)
        self.retries = 0
        self._queries = options.queries()
        after = (bounds or {}).get("after")
        # None: to the end of the table, rows added since the split included.
        self._upto: Any = (bounds or {}).get("upto")
        self._nulls_done = int(checkpoint.get("null_ids", 0))
        # The NULL ids are the first range's (the whole table's when not sliced).
        reads_nulls = after is None and "last_id" not in checkpoint
        self._nulls_left: int | None = None if reads_nulls else 0
        last = checkpoint.get("last_id")
        self._last: Any = after if last is None else last
        self._fetched_after: Any = self._last
        self._exhausted = False
        # Rows fetched but not handed out yet, with their raw ids.
        self._pending: deque[tuple[Any, Record]] = deque()
        self._last_good_id: str | None = None

    def _fetch(self, limit: int) -> None:
        """The next page: `limit` rows after the last fetched id, completed with its equal ids."""
        after, upto = self._fetched_after, self._upto
        page = self._queries.page(after=after is not None, upto=upto is not None)
        params = [value for value in (after, upto) if value is not None] + [limit]
        rows = self._db.run(lambda c: c.query(page, params))
        if len(rows) < limit:
            self._exhausted = True
        elif rows:
            last = rows[-1][0]
            same = self._db.run(lambda c: c.query(self._queries.same_id, (last,)))
            rows = [row for row in rows if row[0] != last] + same
        for row in rows:
            record = _row_record(row)
            if isinstance(record, Document):
                if record.id == self._last_good_id:
                    locator = record.locator
                    record = Malformed(
                        f"{record.id} ({locator})",
                        locator,
                        f"{locator}: duplicate id {record.id!r}",
                        _row_preview(row[0], row[1], row[2]),
                    )
                else:
                    self._last_good_id = record.id
            self._pending.append((row[0], record))
        if rows:
            self._fetched_after = rows[-1][0]
        self.retries = self._db.retries

    def _null_records(self, size: int) -> list[Record]:
        if self._nulls_left is None:
            total = int(self._db.run(lambda c: c.query(self._queries.null_ids))[0][0])
            self._nulls_left = max(0, total - self._nulls_done)
        taken = min(size, self._nulls_left)
        records: list[Record] = []
        for _ in range(taken):
            self._nulls_done += 1
            locator = f"row {self._nulls_done} with a NULL id"
            records.append(Malformed(locator, locator, f"{locator}: 'id' must not be NULL"))
        self._nulls_left -= taken
        return records

    def read_batch(self, size: int) -> list[Record]:
        try:
            return self._read_batch(size)
        finally:
            self.retries = self._db.retries  # also when the source gave up: they count too

    def _read_batch(self, size: int) -> list[Record]:
        records = self._null_records(size)
        if records:
            return records
        while len(self._pending) < size and not self._exhausted:
            self._fetch(max(size, 1))
        taken: list[Record] = []
        last_raw: Any = None
        while self._pending and (
            len(taken) < size or self._pending[0][0] == last_raw  # keep equal ids together
        ):
            last_raw, record = self._pending.popleft()
            taken.append(record)
        if taken:
            self._last = _checkpoint_value(last_raw)
        return taken

    def __iter__(self) -> Iterator[Record]:
        while records := self.read_batch(PAGE_ROWS):
            yield from records

    def checkpoint(self) -> dict[str, Any]:
        position: dict[str, Any] = {"null_ids": self._nulls_done}
        if self._nulls_left == 0 or self._last is not None:
            position["last_id"] = self._last
        return position

    def close(self) -> None:
        self._db.close()
