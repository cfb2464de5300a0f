"""A real outage of a sqlite-vec store: this process holds the file's exclusive write lock, so
the worker's writes wait out their busy timeout and fail with "database is locked" (transient)
until its circuit breaker fails the job. Shared by the resume tests (integration and browser)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import apsw

from reindexer.models import ReindexJob
from reindexer.stores.sqlite_vec import BUSY_TIMEOUT_MS, SqliteVecStore

# A slow store, so that the test takes the lock while the job is under way; no retries, so the
# breaker opens after its minimum of 8 transient failures in a row (each waits BUSY_TIMEOUT_MS),
# within one batch: 40 documents halve 8 times before then, and nothing of it is committed.
OUTAGE_DOCS = 400
OUTAGE_BATCH = 40
OUTAGE_SPEC = {
    "store": "flaky(sqlite-vec,latency=250)",
    "collection": "outage",
    "batch_size": OUTAGE_BATCH,
    "max_retries": 0,
}
# How long the breaker takes to open, with a margin for the slow store and a loaded machine.
BREAKER_SECONDS = 8 * BUSY_TIMEOUT_MS / 1000 + 60


def store_file(data_dir: Path, job: ReindexJob) -> Path:
    return SqliteVecStore.path_of(data_dir, job.collection)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold `path`'s write lock (BEGIN EXCLUSIVE) until the block ends."""
    conn = apsw.Connection(str(path))
    try:
        conn.set_busy_timeout(30_000)  # waits for the worker's current write to commit
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()
