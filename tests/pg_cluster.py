"""A PostgreSQL cluster of a test module's own, so that its tests may restart it (or cut it off)
without touching anybody else's database.

`initdb` and `pg_ctl` run as the `postgres` user (PostgreSQL refuses to run as root). By default
the cluster is Debian's PostgreSQL 15 on a free port of 127.0.0.1; the network-host test runs
pgserver's PostgreSQL 16 with pgvector (`pgserver_bin()`) inside a network namespace instead,
on that host's address. Each test copies a migrated template database (`template_cluster`,
`copied_database`), which takes a fraction of a second where migrating takes several.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
REPO_ROOT = Path(__file__).resolve().parent.parent
MANAGE = REPO_ROOT / "manage.py"
_copies = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pgserver_bin() -> Path:
    """The binaries of PyPI's pgserver (PostgreSQL 16 with pgvector), made usable by the
    postgres user: as root, pip leaves folders on the way to them that others cannot enter."""
    try:
        from pgserver import _commands, utils
    except ImportError as exc:
        pytest.fail(f"the PyPI package pgserver is not installed ({exc}); `pip install -e .[dev]`")
    bin_dir = Path(_commands.POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_prefix_permissions(bin_dir)
    utils.ensure_folder_permissions(bin_dir, read | execute)
    utils.ensure_folder_permissions(bin_dir.parent / "lib", read)
    return bin_dir


@dataclass(frozen=True)
class Cluster:
    """A cluster in `path`, listening on `host`:`port`, run from `bin_dir`; inside the network
    namespace `netns` when given (its server is then reachable only from other namespaces)."""

    path: Path
    port: int
    host: str = "127.0.0.1"
    bin_dir: Path = PG15_BIN
    netns: str | None = None

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def log(self) -> Path:
        return self.path / "server.log"

    def command(self, program: str, *argv: str) -> list[str]:
        """argv that runs `program` from this cluster's binaries as postgres, in its namespace."""
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*inside, "runuser", "-u", "postgres", "--", str(self.bin_dir / program), *argv]

    def as_postgres(self, program: str, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(  # noqa: S603 - our own binaries and arguments
            self.command(program, *argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{program} {' '.join(argv)} failed (exit {done.returncode}): {done.stderr}\n"
                f"server log:\n{tail(self.log)}"
            )

    def pg_ctl(self, *argv: str) -> None:
        # The server logs to a file: on our pipes it would hold them open, and `run` waiting.
        self.as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.log), *argv, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.path} -c listen_addresses={self.host} -c fsync=off"
        self.pg_ctl("-o", options, "start", "-w")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is cut, the server is back on the same port."""
        self.pg_ctl("restart", "-m", "fast", "-w")

    def url(self, database: str, port: int | None = None) -> str:
        return f"postgres://postgres@{self.host}:{port or self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection[Any]:
        """A connection from this process (not possible into a namespace: see NOTES.md)."""
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@contextlib.contextmanager
def running_cluster(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    bin_dir: Path = PG15_BIN,
    netns: str | None = None,
    trusted_network: str | None = None,
) -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed at the end. `trusted_network` (a CIDR) may
    connect without a password, besides the local addresses that initdb trusts."""
    if not (bin_dir / "initdb").exists():
        pytest.fail(f"this test starts its own PostgreSQL cluster, but there is no {bin_dir}")
    # Not under pytest's tmp dirs: the postgres user must be able to reach the directory.
    path = Path(tempfile.mkdtemp(prefix="reindexer-pg-"))
    shutil.chown(path, "postgres", "postgres")
    cluster = Cluster(path, port or free_port(), host, bin_dir, netns)
    try:
        cluster.as_postgres(
            "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "-N"
        )
        if trusted_network:
            with (cluster.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {trusted_network} trust\n")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, AssertionError):
            cluster.pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(path, ignore_errors=True)


def subprocess_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a `manage.py` subprocess on `database_url`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "reindexer.settings",
        "REINDEXER_DATA_DIR": str(data_dir),
    }


def migrate(database_url: str, data_dir: Path, *, inside: list[str] | None = None) -> None:
    """`manage.py migrate` on `database_url`; `inside` prefixes the command (`ip netns exec`)."""
    migrated = subprocess.run(  # noqa: S603 - this interpreter and our manage.py
        [*(inside or []), sys.executable, str(MANAGE), "migrate", "--noinput"],
        env=subprocess_env(database_url, data_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr


@contextlib.contextmanager
def template_cluster(template: str, data_dir: Path, extra_sql: str = "") -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster on 127.0.0.1 holding the migrated database `template` (and
    `extra_sql` run in it), for `copied_database`."""
    with running_cluster() as cluster:
        with cluster.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {template}")
        migrate(cluster.url(template), data_dir)
        if extra_sql:
            with cluster.connect(template) as conn:
                conn.execute(extra_sql)
        yield cluster


@contextlib.contextmanager
def copied_database(cluster: Cluster, template: str) -> Iterator[Database]:
    """A database of one test's own, copied from `template`; dropped at the end."""
    name = f"{template.removesuffix('_template')}_{os.getpid()}_{next(_copies)}"
    with cluster.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield Database(cluster, name)
    finally:
        with cluster.connect("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class Database:
    """One database of the cluster, read straight with psycopg (not through Django)."""

    cluster: Cluster
    name: str

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of `sql`, or [] while the database is away (polling rides a restart too)."""
        try:
            with self.cluster.connect(self.name) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            return []

    def job(self, job_id: int, *columns: str) -> tuple[Any, ...]:
        sql = f"SELECT {', '.join(columns)} FROM reindexer_reindexjob WHERE id = %s"  # noqa: S608
        found = self.rows(sql, job_id)
        return found[0] if found else ()

    def processed(self, job_id: int) -> int:
        found = self.job(job_id, "processed_docs")
        return int(found[0]) if found else -1

    def events(self, job_id: int) -> list[tuple[str, str]]:
        sql = "SELECT kind, actor FROM reindexer_jobevent WHERE job_id = %s ORDER BY at, id"
        return [(kind, actor) for kind, actor in self.rows(sql, job_id)]
