"""The one Redis the tests may use: 127.0.0.1:6379, checked up front with a clear failure."""

from __future__ import annotations

import socket

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def redis_reachable() -> str | None:
    """None when the server answers PING, else why not."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError as exc:
        return str(exc)
    return None if reply.startswith(b"+PONG") else f"unexpected reply to PING: {reply!r}"


def redis_url_or_fail(db: int) -> str:
    """redis://127.0.0.1:6379/<db> once the server there answers PING (never any other host)."""
    problem = redis_reachable()
    if problem is not None:
        pytest.fail(
            f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} ({problem}); the live-update "
            "tests with Redis need it there (start redis-server, or apt-get install redis-server)",
            pytrace=False,
        )
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
