"""Waking idle workers at once: PostgreSQL's LISTEN/NOTIFY, with polling as the fallback.

`notify_workers()` is called wherever a worker may have something new to do: a job queued,
resumed or ended (freeing its collection), a cancel requested, a sliced job split. It sends once
the surrounding transaction commits. Elsewhere (SQLite) it sends nothing, and workers poll.

Each worker process keeps a `Listener`: a connection of its own that LISTENs on a thread and
rings the worker's bell on every notification. When that connection drops, the worker polls
until the listener is back; the listener never stops the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
import time
from typing import TYPE_CHECKING, Any

from django.db import connection

from reindexer.reconnect import Backoff, one_line

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

CHANNEL = "reindexer_jobs"
LISTEN_SQL = f'LISTEN "{CHANNEL}"'
# What `pg_stat_activity.application_name` shows for a worker's LISTEN connection.
APPLICATION_PREFIX = "reindexer-listen:"
# PostgreSQL keeps this many bytes of an application_name (NAMEDATALEN - 1).
APPLICATION_NAME_BYTES = 63
# Between reconnection attempts after the LISTEN connection dropped.
RECONNECT = Backoff(first=0.2, cap=5.0)
# A connection that lived this long counts as recovered: the next drop starts the backoff over.
STABLE_SECONDS = 10.0
# A partitioned server sends nothing: TCP keepalives notice it, and connect_timeout bounds each
# attempt, so the listener neither hangs nor blocks the exit. The job database's own options
# (settings, or the URL) win over these fallbacks.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# How long a starting worker waits for its first LISTEN, so that no job queued between its first
# claim and the LISTEN waits for the poll; a database that does not answer by then is polled.
FIRST_LISTEN_SECONDS = 5.0
# Django's own arguments to psycopg that a plain connection does not take.
DJANGO_ONLY_PARAMS = ("cursor_factory", "context", "prepare_threshold")


def notify_workers(reason: str, job_id: int) -> None:
    """Wake idle workers once the current transaction commits (a no-op without LISTEN/NOTIFY).

    NOTIFY inside a transaction is delivered on commit and dropped on a rollback, so a worker
    woken by it always finds the row that it announces.
    """
    if connection.vendor != "postgresql":
        return
    payload = json.dumps({"reason": reason, "job_id": job_id})
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


def application_name(worker_id: str) -> str:
    """The LISTEN connection's name for `worker_id`, cut to what PostgreSQL keeps."""
    name = f"{APPLICATION_PREFIX}{worker_id}".encode()[:APPLICATION_NAME_BYTES]
    return name.decode(errors="ignore")


def listen_params(worker_id: str) -> dict[str, Any]:
    """psycopg arguments for a LISTEN connection to Django's database, named after the worker."""
    params = dict(connection.get_connection_params())
    for key in DJANGO_ONLY_PARAMS:
        params.pop(key, None)
    params = {**CONNECT_OPTIONS, **params}  # the settings' (and the URL's) options win
    params["application_name"] = application_name(worker_id)
    return params


def start_listener(worker_id: str, bell: threading.Event, poll_seconds: float) -> Listener | None:
    """A started listener that rings `bell` on each notification; None where the job database
    has no LISTEN (SQLite), so the worker polls every `poll_seconds`."""
    if connection.vendor != "postgresql":
        return None
    listener = Listener(listen_params(worker_id), bell, worker_id, poll_seconds)
    listener.start(wait=FIRST_LISTEN_SECONDS)
    return listener


class Listener:
    """One worker's LISTEN connection, on a daemon thread; `close()` ends it at once."""

    def __init__(
        self,
        params: dict[str, Any],
        bell: threading.Event,
        worker_id: str,
        poll_seconds: float,
        backoff: Backoff = RECONNECT,
    ) -> None:
        self._params = params
        self._bell = bell
        self._what = f"worker {worker_id}"
        self._poll_seconds = poll_seconds
        self._backoff = backoff
        self._closing = threading.Event()
        # A byte written here wakes the thread out of its select() when the worker exits.
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"listen:{worker_id}", daemon=True)
        self._settled = threading.Event()  # the first attempt to LISTEN is over
        self._listened = False  # whether it ever listened (for the log's wording)
        self._down = False  # whether it is polling for want of a connection

    def start(self, wait: float = 0.0) -> None:
        """Start the thread; wait up to `wait` seconds for its first attempt to LISTEN."""
        self._thread.start()
        self._settled.wait(wait)

    def close(self, timeout: float = 2.0) -> None:
        """Stop listening and close the connection; waits at most `timeout` (a connect attempt
        in flight is left to its daemon thread)."""
        self._closing.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> None:
        import psycopg  # here: a worker on SQLite never loads it

        attempt = 0
        while not self._closing.is_set():
            connected_at = time.monotonic()
            try:
                with psycopg.connect(**self._params, autocommit=True) as conn:
                    conn.execute(LISTEN_SQL)
                    connected_at = time.monotonic()
                    self._up()
                    self._listen(conn)
            except Exception as exc:  # the listener must never take the worker down
                if self._closing.is_set():
                    return
                if time.monotonic() - connected_at > STABLE_SECONDS:
                    attempt = 0
                attempt += 1
                self._lost(exc)
                self._closing.wait(self._backoff.delay(attempt))

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        """Ring the bell for each notification until closing; a dropped connection raises."""
        fd = conn.fileno()
        while True:
            # Drain first: notifications that came with LISTEN's reply are already buffered.
            for notify in conn.notifies(timeout=0):
                logger.debug("%s: woken by %s", self._what, notify.payload)
                self._bell.set()
            ready, _, _ = select.select([fd, self._wake_r], [], [])
            if self._wake_r in ready:
                return

    def _up(self) -> None:
        if not self._listened:
            logger.info("%s: listening for new jobs (%s)", self._what, LISTEN_SQL)
        elif self._down:
            logger.info("%s: listening for new jobs again", self._what)
            # A job queued while nobody listened would otherwise wait for the next poll.
            self._bell.set()
        self._listened, self._down = True, False
        self._settled.set()

    def _lost(self, exc: BaseException) -> None:
        if self._down:
            logger.debug("%s: LISTEN reconnection failed: %s", self._what, one_line(exc))
            return
        self._down = True
        self._settled.set()
        cause = "LISTEN connection lost" if self._listened else "cannot LISTEN"
        logger.warning(
            "%s: %s, falling back to polling every %g s until it is back: %s",
            self._what,
            cause,
            self._poll_seconds,
            one_line(exc),
        )
