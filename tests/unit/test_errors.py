"""classify over real exceptions, raised by the drivers, sockets and files that raise them."""

from __future__ import annotations

import contextlib
import errno
import socket
import sqlite3
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import numpy as np
import psycopg
import pytest
import redis
from django.db.utils import ConnectionHandler
from pytest_django import DjangoDbBlocker
from redis.backoff import NoBackoff
from redis.retry import Retry

from reindexer.errors import (
    DIMENSIONS,
    DimensionMismatch,
    ErrorKind,
    PermanentError,
    TransientError,
    classify,
    describe_fault,
    is_store_fatal,
    is_transient,
)
from tests.openai_errors import (
    openai_overloaded,
    openai_rate_limited,
    openai_unknown_model,
    openai_unreachable,
    openai_wrong_key,
)


def raised(action: Callable[[], object]) -> BaseException:
    """The exception that `action` raises; the test fails if it raises none."""
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError(f"{action} raised nothing")


def closed_port() -> int:
    """A local TCP port that nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Hold the write lock of the SQLite database at `path`, as another writer would."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()


def apsw_busy(tmp_path: Path) -> BaseException:
    path = tmp_path / "apsw.sqlite3"
    holder = apsw.Connection(str(path))
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    writer = apsw.Connection(str(path))
    writer.set_busy_timeout(0)
    try:
        exc = raised(lambda: writer.execute("INSERT INTO t VALUES (1)"))
    finally:
        writer.close()
        holder.close()
    assert type(exc) is apsw.BusyError
    return exc


def sqlite3_locked(tmp_path: Path) -> BaseException:
    path = tmp_path / "stdlib.sqlite3"
    with write_locked(path):
        writer = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            exc = raised(lambda: writer.execute("INSERT INTO t VALUES (1)"))
        finally:
            writer.close()
    assert type(exc) is sqlite3.OperationalError
    return exc


def django_locked(tmp_path: Path) -> BaseException:
    """Django's own OperationalError, from its SQLite backend (not the test database)."""
    import django.db.utils

    path = tmp_path / "django.sqlite3"
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": path,
                "OPTIONS": {"timeout": 0},
            }
        }
    )
    with write_locked(path):
        conn = handler["default"]
        try:
            with conn.cursor() as cursor:
                exc = raised(lambda: cursor.execute("INSERT INTO t VALUES (1)"))
        finally:
            conn.close()
    assert type(exc) is django.db.utils.OperationalError
    return exc


def psycopg_refused(tmp_path: Path) -> BaseException:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    exc = raised(lambda: psycopg.connect(url, connect_timeout=2))
    assert type(exc) is psycopg.OperationalError
    return exc


def redis_refused(tmp_path: Path) -> BaseException:
    client = redis.Redis(
        host="127.0.0.1",
        port=closed_port(),
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), retries=0),  # the first refusal, not redis-py's own retries
    )
    try:
        exc = raised(client.ping)
    finally:
        client.close()
    assert type(exc) is redis.exceptions.ConnectionError
    return exc


def socket_timeout(tmp_path: Path) -> BaseException:
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(0.01)
        exc = raised(lambda: left.recv(1))
    assert type(exc) is TimeoutError
    return exc


def connection_reset(tmp_path: Path) -> BaseException:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname()[:2], timeout=5)
        with client:
            accepted, _ = server.accept()
            # Linger 0: closing sends a RST instead of a FIN, as a crashed peer's kernel would.
            accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            accepted.close()
            exc = raised(lambda: client.recv(1))
    assert type(exc) is ConnectionResetError
    return exc


def connection_refused(tmp_path: Path) -> BaseException:
    exc = raised(lambda: socket.create_connection(("127.0.0.1", closed_port()), timeout=2))
    assert type(exc) is ConnectionRefusedError
    return exc


def file_not_found(tmp_path: Path) -> BaseException:
    return raised(lambda: (tmp_path / "missing.jsonl").open())


def bad_socket_timeout(tmp_path: Path) -> BaseException:
    with socket.socket() as sock:
        return raised(lambda: sock.settimeout(-1))  # ValueError: Timeout value out of range


def missing_key(key: str) -> Callable[[Path], BaseException]:
    empty: dict[str, str] = {}
    return lambda tmp_path: raised(lambda: empty[key])


def given(exc: BaseException) -> Callable[[Path], BaseException]:
    return lambda tmp_path: exc


def apsw_full(tmp_path: Path) -> BaseException:
    """A real FullError: the database may not grow past two pages."""
    conn = apsw.Connection(str(tmp_path / "full.sqlite3"))
    try:
        conn.execute("PRAGMA max_page_count=2").fetchall()
        exc = raised(
            lambda: conn.execute("CREATE TABLE t (x); INSERT INTO t VALUES (zeroblob(1e5))")
        )
    finally:
        conn.close()
    assert type(exc) is apsw.FullError
    return exc


def django_full(tmp_path: Path) -> BaseException:
    """Django's OperationalError for a full job database, as the engine meets it."""
    import django.db.utils

    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": tmp_path / "jobs.sqlite3"}}
    )
    conn = handler["default"]
    try:
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA max_page_count=2")
            cursor.execute("CREATE TABLE t (x)")
            exc = raised(lambda: cursor.execute("INSERT INTO t VALUES (zeroblob(100000))"))
    finally:
        conn.close()
    assert type(exc) is django.db.utils.OperationalError
    return exc


def apsw_read_only(tmp_path: Path) -> BaseException:
    """A real ReadOnlyError: the store file opened read-only, then written."""
    path = tmp_path / "ro.sqlite3"
    apsw.Connection(str(path)).execute("CREATE TABLE t (x)")
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        exc = raised(lambda: conn.execute("INSERT INTO t VALUES (1)"))
    finally:
        conn.close()
    assert type(exc) is apsw.ReadOnlyError
    return exc


def sqlite3_read_only(tmp_path: Path) -> BaseException:
    path = tmp_path / "ro-stdlib.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        exc = raised(lambda: conn.execute("INSERT INTO t VALUES (1)"))
    finally:
        conn.close()
    assert type(exc) is sqlite3.OperationalError
    return exc


def apsw_no_such_table(tmp_path: Path) -> BaseException:
    conn = apsw.Connection(str(tmp_path / "empty.sqlite3"))
    try:
        exc = raised(lambda: conn.execute("SELECT id FROM docs_meta"))
    finally:
        conn.close()
    assert type(exc) is apsw.SQLError
    return exc


def psycopg_no_such_table(tmp_path: Path) -> BaseException:
    """PostgreSQL's undefined_table, from the machine's own server."""
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5) as c:
        exc = raised(lambda: c.execute("SELECT * FROM reindexer_no_such_table"))
    assert type(exc) is psycopg.errors.UndefinedTable
    return exc


def apsw_not_a_database(tmp_path: Path) -> BaseException:
    """A store file overwritten with garbage."""
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"\xde\xad\xbe\xef" * 2048)
    conn = apsw.Connection(str(path))
    try:
        exc = raised(lambda: conn.execute("SELECT * FROM sqlite_master").fetchall())
    finally:
        conn.close()
    assert type(exc) is apsw.NotADBError
    return exc


def apsw_malformed(tmp_path: Path) -> BaseException:
    """A real database whose second page was overwritten with garbage."""
    path = tmp_path / "malformed.sqlite3"
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (randomblob(500))", [()] * 200)
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    conn = apsw.Connection(str(path))
    try:
        exc = raised(lambda: conn.execute("SELECT sum(length(x)) FROM t").fetchall())
    finally:
        conn.close()
    assert type(exc) is apsw.CorruptError
    return exc


def sqlite_vec_busy(tmp_path: Path) -> BaseException:
    """A real sqlite-vec store writing while another writer holds the file's lock."""
    from reindexer.documents import Document
    from reindexer.embedders import open_embedder
    from reindexer.stores.sqlite_vec import SqliteVecStore

    store = SqliteVecStore(tmp_path / "busy.sqlite-vec", 384)
    try:
        store._conn.set_busy_timeout(0)  # fail at once rather than wait out the lock
        docs = [Document("a", "text", {})]
        vectors = open_embedder("hashing").embed(["text"])
        holder = apsw.Connection(str(tmp_path / "busy.sqlite-vec"))
        try:
            holder.execute("BEGIN IMMEDIATE")
            return raised(lambda: store.upsert(docs, vectors))
        finally:
            holder.close()
    finally:
        store.close()


def sqlite_vec_other_dimensions(tmp_path: Path) -> BaseException:
    """A collection made for 384 dimensions, opened for 768: refused at open, before any write."""
    from reindexer.stores.sqlite_vec import SqliteVecStore

    path = tmp_path / "dims.sqlite-vec"
    SqliteVecStore(path, 384).close()
    exc = raised(lambda: SqliteVecStore(path, 768))
    assert type(exc) is DimensionMismatch, exc
    assert (exc.existing, exc.wanted) == (384, 768)
    return exc


def sqlite_vec_wider_vectors(tmp_path: Path) -> BaseException:
    """A 384-dimension collection handed 768-dimension vectors: vec0's own refusal."""
    from reindexer.documents import Document
    from reindexer.stores.sqlite_vec import SqliteVecStore

    store = SqliteVecStore(tmp_path / "wide.sqlite-vec", 384)
    try:
        vectors = np.ones((1, 768), dtype=np.float32)
        exc = raised(lambda: store.upsert([Document("a", "text")], vectors))
    finally:
        store.close()
    assert type(exc) is apsw.SQLError, exc
    return exc


T = ErrorKind.TRANSIENT
STORE = ErrorKind.STORE
DOC = ErrorKind.DOCUMENT

CASES = [
    pytest.param(given(TransientError("store blinked")), T, id="TransientError"),
    pytest.param(given(PermanentError("rejected by the store")), DOC, id="PermanentError"),
    pytest.param(
        given(PermanentError("request timed out")), DOC, id="PermanentError-about-a-timeout"
    ),
    pytest.param(socket_timeout, T, id="TimeoutError-socket-recv"),
    pytest.param(connection_reset, T, id="ConnectionResetError-socket-rst"),
    pytest.param(connection_refused, T, id="ConnectionRefusedError-closed-port"),
    pytest.param(given(OSError(errno.ETIMEDOUT, "Connection timed out")), T, id="ETIMEDOUT"),
    pytest.param(file_not_found, DOC, id="FileNotFoundError"),
    pytest.param(apsw_busy, T, id="apsw.BusyError-locked-file"),
    pytest.param(sqlite_vec_busy, T, id="sqlite-vec-store-locked-by-another-writer"),
    pytest.param(sqlite3_locked, T, id="sqlite3.OperationalError-database-is-locked"),
    pytest.param(django_locked, T, id="django.OperationalError-database-is-locked"),
    pytest.param(psycopg_refused, T, id="psycopg.OperationalError-connection-refused"),
    pytest.param(redis_refused, T, id="redis.ConnectionError-connection-refused"),
    pytest.param(given(ValueError("embedding has 12 dimensions, not 384")), DOC, id="ValueError"),
    pytest.param(missing_key("text"), DOC, id="KeyError"),
    pytest.param(bad_socket_timeout, DOC, id="ValueError-timeout-value-out-of-range"),
    pytest.param(missing_key("timeout"), DOC, id="KeyError-timeout"),
    # Errors of the store, disk or database as a whole: no document is to blame.
    pytest.param(apsw_full, STORE, id="apsw.FullError-max-page-count"),
    pytest.param(django_full, STORE, id="django.OperationalError-database-or-disk-is-full"),
    pytest.param(given(OSError(errno.ENOSPC, "No space left on device")), STORE, id="ENOSPC"),
    pytest.param(given(OSError(errno.EDQUOT, "Disk quota exceeded")), STORE, id="EDQUOT"),
    pytest.param(apsw_read_only, STORE, id="apsw.ReadOnlyError-read-only-file"),
    pytest.param(sqlite3_read_only, STORE, id="sqlite3.OperationalError-readonly-database"),
    pytest.param(given(OSError(errno.EROFS, "Read-only file system")), STORE, id="EROFS"),
    pytest.param(given(PermissionError(errno.EACCES, "Permission denied")), STORE, id="EACCES"),
    pytest.param(apsw_no_such_table, STORE, id="apsw.SQLError-no-such-table"),
    pytest.param(psycopg_no_such_table, STORE, id="psycopg.UndefinedTable"),
    pytest.param(apsw_not_a_database, STORE, id="apsw.NotADBError-garbage-file"),
    pytest.param(apsw_malformed, STORE, id="apsw.CorruptError-malformed-page"),
    pytest.param(openai_rate_limited, T, id="openai-embedder-429-retry-after"),
    pytest.param(openai_overloaded, T, id="openai-embedder-503"),
    pytest.param(openai_unreachable, T, id="openai-embedder-closed-port"),
    pytest.param(openai_wrong_key, STORE, id="openai-embedder-401-wrong-key"),
    pytest.param(openai_unknown_model, STORE, id="openai-embedder-404-unknown-model"),
    pytest.param(sqlite_vec_other_dimensions, STORE, id="sqlite-vec-other-dimensions"),
    pytest.param(sqlite_vec_wider_vectors, STORE, id="sqlite-vec-vectors-of-other-dimensions"),
]


@pytest.mark.parametrize(("make_error", "kind"), CASES)
def test_classify__sorts_real_errors_into_transient_store_wide_and_document(
    make_error: Callable[[Path], BaseException],
    kind: ErrorKind,
    tmp_path: Path,
    django_db_blocker: DjangoDbBlocker,
) -> None:
    with django_db_blocker.unblock():  # only the django_* cases connect, each to its own file
        exc = make_error(tmp_path)
    assert classify(exc) is kind, f"{type(exc).__name__}: {exc}"
    assert is_transient(exc) is (kind is ErrorKind.TRANSIENT)
    assert is_store_fatal(exc) is (kind is ErrorKind.STORE)


@pytest.mark.parametrize(
    ("make_error", "cause"),
    [
        (apsw_full, "disk full"),
        (django_full, "disk full"),
        (apsw_read_only, "read only"),
        (apsw_no_such_table, "no such table"),
        (apsw_malformed, "corrupt file"),
        (sqlite_vec_other_dimensions, DIMENSIONS),
        (sqlite_vec_wider_vectors, DIMENSIONS),
    ],
)
def test_describe_fault__names_the_cause_then_the_original_error(
    make_error: Callable[[Path], BaseException],
    cause: str,
    tmp_path: Path,
    django_db_blocker: DjangoDbBlocker,
) -> None:
    with django_db_blocker.unblock():
        exc = make_error(tmp_path)
    assert describe_fault(exc) == f"{cause} ({type(exc).__name__}: {exc})"
