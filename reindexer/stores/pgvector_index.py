"""The HNSW index of a `pgvector` collection, built once its job has written every document.

`CREATE INDEX` runs on a connection of its own in a background thread; the calling thread polls
`pg_stat_progress_create_index` for that backend and hands the figures to the engine's report.
A report that returns False cancels the build on the server (a plain CREATE INDEX rolls back
whole, so nothing is half-built) and raises IndexBuildAborted. An error of the build thread is
re-raised in the caller as psycopg raised it, so the engine tells transient from fatal.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from reindexer.stores.base import IndexBuildAborted, IndexProgress, IndexReport

POLL_SECONDS = 0.5
STARTING = "starting"


def index_name(table: str) -> str:
    return f"{table}_embedding_hnsw"


def index_exists(conn: psycopg.Connection[Any], table: str) -> bool:
    name = sql.Identifier(index_name(table)).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def progress_of(conn: psycopg.Connection[Any], pid: int) -> IndexProgress:
    """What the build on backend `pid` is doing: tuples when it counts them, else blocks."""
    row = conn.execute(
        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total"
        " FROM pg_stat_progress_create_index WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:
        return IndexProgress(detail=STARTING)
    phase, blocks_done, blocks_total, tuples_done, tuples_total = row
    if tuples_total:
        return IndexProgress(int(tuples_done), int(tuples_total), f"{phase} (tuples)")
    if blocks_total:
        return IndexProgress(int(blocks_done), int(blocks_total), f"{phase} (blocks)")
    return IndexProgress(detail=str(phase))


class _Build(threading.Thread):
    """CREATE INDEX on `conn`, keeping the error it ends with for the caller."""

    def __init__(self, conn: psycopg.Connection[Any], statement: sql.Composed) -> None:
        super().__init__(name="pgvector-hnsw", daemon=True)
        self.conn = conn
        self.statement = statement
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.conn.execute(self.statement)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            self.error = exc


def build_hnsw(poll: psycopg.Connection[Any], url: str, table: str, report: IndexReport) -> bool:
    """Build `table`'s HNSW index (cosine) if missing, reporting through `report`; False when
    it was there already."""
    from reindexer.stores.pgvector import connect  # the module imports this one

    if index_exists(poll, table):
        return False
    if not report(IndexProgress(detail=STARTING)):
        raise IndexBuildAborted(f"index build of {table!r} abandoned before it started")
    statement = sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops)"
    ).format(sql.Identifier(index_name(table)), sql.Identifier(table))
    conn = connect(url)
    build = _Build(conn, statement)
    try:
        pid = conn.info.backend_pid
        build.start()
        while True:
            build.join(POLL_SECONDS)
            if not build.is_alive():
                break
            if not report(progress_of(poll, pid)):
                conn.cancel_safe()
                build.join()
                raise IndexBuildAborted(f"index build of {table!r} abandoned")
    except BaseException:
        if build.is_alive():
            conn.cancel_safe()
            build.join()
        raise
    finally:
        conn.close()
    if build.error is not None:
        raise build.error
    return True
