"""is_transient over real exceptions, raised by the drivers and sockets that really raise them."""

from __future__ import annotations

import contextlib
import errno
import socket
import sqlite3
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import psycopg
import pytest
import redis
from django.db.utils import ConnectionHandler
from pytest_django import DjangoDbBlocker
from redis.backoff import NoBackoff
from redis.retry import Retry

from reindexer.errors import PermanentError, TransientError, is_transient


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


WRONG_BY_TEXT = (
    "the classifier calls any error whose text holds 'timeout' transient, so a permanent error "
    "about a timeout setting is retried (a later issue fixes the classifier)"
)
WRONG_DRIVER_REFUSED = (
    "a refused connection is transient as ConnectionRefusedError (ECONNREFUSED), but the driver "
    "wraps it in its own error class without an errno, and the classifier's phrases do not cover "
    "'connection refused'"
)

CASES = [
    pytest.param(given(TransientError("store blinked")), True, id="TransientError"),
    pytest.param(given(PermanentError("rejected by the store")), False, id="PermanentError"),
    pytest.param(
        given(PermanentError("request timed out")), False, id="PermanentError-about-a-timeout"
    ),
    pytest.param(socket_timeout, True, id="TimeoutError-socket-recv"),
    pytest.param(connection_reset, True, id="ConnectionResetError-socket-rst"),
    pytest.param(connection_refused, True, id="ConnectionRefusedError-closed-port"),
    pytest.param(
        given(OSError(errno.ETIMEDOUT, "Connection timed out")), True, id="OSError-ETIMEDOUT"
    ),
    pytest.param(file_not_found, False, id="FileNotFoundError"),
    pytest.param(apsw_busy, True, id="apsw.BusyError-locked-file"),
    pytest.param(sqlite3_locked, True, id="sqlite3.OperationalError-database-is-locked"),
    pytest.param(django_locked, True, id="django.OperationalError-database-is-locked"),
    pytest.param(
        psycopg_refused,
        True,
        id="psycopg.OperationalError-connection-refused",
        marks=pytest.mark.xfail(strict=True, reason=WRONG_DRIVER_REFUSED),
    ),
    pytest.param(
        redis_refused,
        True,
        id="redis.ConnectionError-connection-refused",
        marks=pytest.mark.xfail(strict=True, reason=WRONG_DRIVER_REFUSED),
    ),
    pytest.param(given(ValueError("embedding has 12 dimensions, not 384")), False, id="ValueError"),
    pytest.param(missing_key("text"), False, id="KeyError"),
    pytest.param(
        bad_socket_timeout,
        False,
        id="ValueError-timeout-value-out-of-range",
        marks=pytest.mark.xfail(strict=True, reason=WRONG_BY_TEXT),
    ),
    pytest.param(
        missing_key("timeout"),
        False,
        id="KeyError-timeout",
        marks=pytest.mark.xfail(strict=True, reason=WRONG_BY_TEXT),
    ),
]


@pytest.mark.parametrize(("make_error", "transient"), CASES)
def test_is_transient__classifies_real_errors(
    make_error: Callable[[Path], BaseException],
    transient: bool,
    tmp_path: Path,
    django_db_blocker: DjangoDbBlocker,
) -> None:
    with django_db_blocker.unblock():  # only django_locked connects, to its own file
        exc = make_error(tmp_path)
    assert is_transient(exc) is transient, f"{type(exc).__name__}: {exc}"
