"""Source databases for the `sql:` source's tests: a SQLite file, or a PostgreSQL database made
for the test and dropped after it, each written through its own driver."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import psycopg

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

# Runs one statement (`?` placeholders) once, or once per row when rows are given.
Run = Callable[[str, list[tuple[Any, ...]]], None]


def sqlite_runner(path: Path) -> Run:
    def run(sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn = apsw.Connection(str(path))
        try:
            if rows:
                conn.executemany(sql, rows)
            else:
                conn.execute(sql)
        finally:
            conn.close()

    return run


def postgres_runner(url: str) -> Run:
    def run(sql: str, rows: list[tuple[Any, ...]]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            statement = sql.replace("?", "%s")
            if rows:
                conn.cursor().executemany(statement, rows)
            else:
                conn.execute(statement)

    return run


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """The URL of a new PostgreSQL database on 127.0.0.1:5432, dropped when the block ends."""
    name = f"reindexer_sqlsource_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'drop database "{name}" with (force)')
