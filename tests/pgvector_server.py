"""A real PostgreSQL 16 with pgvector for the tests (PyPI's pgserver), on 127.0.0.1.

pgserver's own `get_server` listens on a Unix socket only, and worker subprocesses and the
contract suite want TCP, so this drives pgserver's bundled `initdb` and `pg_ctl` directly: one
cluster per folder, trust auth, on a free port. As root (CI containers), PostgreSQL refuses to
run, so the cluster runs as pgserver's own system user `pgserver`, made the way pgserver does.

The server logs every statement with its application name (`log_line_prefix`), so a test can
count the statements one connection sent (`statements(app)`): how the store's "one round trip per
batch" is checked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

DATABASE = "reindexer_vectors"
START_SECONDS = 60
STOP_SECONDS = 30
# %a: the client's application_name, so statements can be told apart by connection.
LOG_LINE_PREFIX = "%m [%p] app=%a "


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


class PgvectorServerError(RuntimeError):
    """pgserver could not give us a running PostgreSQL with pgvector; the message says why."""


class PgvectorServer:
    """A server in its own folder; `url` is what REINDEXER_PGVECTOR_URL takes."""

    url: str

    def __init__(self, folder: Path) -> None:
        try:
            from pgserver import _commands, utils
        except ImportError as exc:
            raise PgvectorServerError(
                f"the PyPI package pgserver is not installed ({exc}); `pip install -e .[dev]`"
            ) from exc
        self._bin = Path(_commands.POSTGRES_BIN_PATH)
        self.folder = folder
        self.pgdata = folder / "pgdata"
        self.log = folder / "postgres.log"
        self.port = _free_port()
        self._user: str | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._user = "pgserver"
            self._as_root(utils)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self._start()
        self._create_database()

    def _as_root(self, utils: object) -> None:
        """Let pgserver's system user own the data and traverse the folders to the binaries."""
        utils.ensure_user_exists(self._user)  # type: ignore[attr-defined]
        utils.ensure_prefix_permissions(self.pgdata)  # type: ignore[attr-defined]
        utils.ensure_prefix_permissions(self._bin)  # type: ignore[attr-defined]
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_folder_permissions(self._bin, read | execute)  # type: ignore[attr-defined]
        utils.ensure_folder_permissions(self._bin.parent / "lib", read)  # type: ignore[attr-defined]
        entry = pwd.getpwnam(str(self._user))
        for path in (self.folder, self.pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str, timeout: float = START_SECONDS) -> None:
        command = [str(self._bin / program), *args]
        try:
            subprocess.run(  # noqa: S603 - the bundled binaries, with our own arguments
                command,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self._user,
                cwd=self.folder,
            )
        except subprocess.CalledProcessError as exc:
            raise PgvectorServerError(
                f"pgserver's {program} failed (exit {exc.returncode}): {exc.stderr.strip()}\n"
                f"server log {self.log}:\n{_tail(self.log)}"
            ) from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgvectorServerError(
                f"pgserver's {program} could not run: {exc}\nserver log:\n{_tail(self.log)}"
            ) from exc

    def _options(self) -> str:
        # TCP on 127.0.0.1 for every client; the socket stays in the data folder, out of /tmp's
        # shared namespace. Every statement is logged with its application name.
        return (
            f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}"
            f" -c log_statement=all -c log_line_prefix='{LOG_LINE_PREFIX}'"
        )

    def _start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(START_SECONDS),
            "-l", str(self.log), "-o", self._options(), "start",
        )  # fmt: skip

    def _create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise PgvectorServerError(
                f"pgserver started but the pgvector database could not be made: {exc}"
            ) from exc

    def statements(self, application_name: str) -> list[str]:
        """The statements logged so far for connections named `application_name`."""
        marker = f"app={application_name} LOG:  "
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            _, sep, rest = line.partition(marker)
            if sep and rest.startswith(("statement: ", "execute ")):
                found.append(rest)
        return found

    def restart(self) -> None:
        """Stop the server and start it again on the same folder and port (data kept)."""
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(START_SECONDS), "-m", "fast",
            "-l", str(self.log), "-o", self._options(), "restart",
        )  # fmt: skip

    def start(self) -> None:
        """Start a stopped server again on the same folder and port."""
        self._start()

    def begin_smart_shutdown(self) -> None:
        """Ask for a smart shutdown without waiting: while a client stays connected the server
        refuses new connections with "the database system is shutting down"."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-W", "-m", "smart", "stop")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(STOP_SECONDS),
                "-m", "fast", "stop",
            )  # fmt: skip


@contextlib.contextmanager
def running_server() -> Iterator[PgvectorServer]:
    """A server in a new folder of /tmp, stopped and removed at the end.

    Not under pytest's tmp_path: as root, the cluster runs as another user who must traverse
    the folders above it, and every new pytest session (other runs at the same time) resets
    /tmp/pytest-of-root to 0700.
    """
    folder = Path(tempfile.mkdtemp(prefix="reindexer-pgvector-"))
    try:
        server = PgvectorServer(folder)
    except PgvectorServerError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"cannot start PostgreSQL with pgvector (pgserver): {exc}", pytrace=False)
    try:
        yield server
    finally:
        with contextlib.suppress(PgvectorServerError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgvectorServer]:
    with running_server() as server:
        yield server
