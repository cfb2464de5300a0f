"""`sql:` sources for real: a worker subprocess reads a table of a SQLite file or a PostgreSQL
database into sqlite-vec, is SIGTERMed and resumed, loses its source server behind a real TCP
proxy, and `reindex verify` checks that nothing was lost or written twice."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.documents import MALFORMED_ERROR
from reindexer.errors import SpecError
from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.integration.conftest import Processes, event_kinds, finish, wait_until
from tests.sql_databases import postgres_runner, sqlite_runner, throwaway_postgres

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PG_ADDRESS = ("127.0.0.1", 5432)
SLOW_STORE = "flaky(sqlite-vec,latency=40)"
ARTICLES = "sql:articles(id=slug,text=body,metadata=tags)"
GOOD = 300
# Rows that each become one malformed-record failure.
BAD_ROWS: list[tuple[Any, Any, Any]] = [
    ("bad-null-text", None, "{}"),
    ("", "an empty id", "{}"),
    ("bad-list-metadata", "metadata is a list", "[1]"),
    (None, "a NULL id", "{}"),
    ("doc-0007", "the same id again", "{}"),
]
BAD_LOCATORS = {
    "id=bad-null-text",
    "id=''",
    "id=bad-list-metadata",
    "row 1 with a NULL id",
    "id=doc-0007",
}

MakeJob = Callable[..., ReindexJob]


def good_rows(n: int) -> list[tuple[Any, Any, Any]]:
    return [
        (f"doc-{i:04d}", f"article {i} about topic {i % 7}", json.dumps({"n": i})) for i in range(n)
    ]


class SourceDatabase:
    """The database a `sql:` source reads, created for one test."""

    def __init__(self, url: str, execute: Callable[[str, list[tuple[Any, ...]]], None]) -> None:
        self.url = url
        self._execute = execute

    def articles(self, rows: list[tuple[Any, Any, Any]]) -> None:
        # No primary key, so the NULL id and the repeated id can be stored.
        self._execute("create table articles (slug text, body text, tags text)", [])
        self._execute("insert into articles (slug, body, tags) values (?, ?, ?)", rows)


@contextlib.contextmanager
def sqlite_source(path: Path) -> Iterator[SourceDatabase]:
    yield SourceDatabase(f"sqlite:///{path}", sqlite_runner(path))


@contextlib.contextmanager
def postgres_source() -> Iterator[SourceDatabase]:
    with throwaway_postgres() as url:
        yield SourceDatabase(url, postgres_runner(url))


def use_source(settings: Any, processes: Processes, url: str | None) -> None:
    """Point this process and its subprocesses at `url` (None: the setting unset)."""
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, sql_source_url=url)
    processes.env.pop("REINDEXER_SQL_SOURCE_URL", None)
    if url is not None:
        processes.env["REINDEXER_SQL_SOURCE_URL"] = url


@pytest.fixture(params=["sqlite", "postgres"])
def source_db(
    request: pytest.FixtureRequest, data_dir: Path, settings: Any, processes: Processes
) -> Iterator[SourceDatabase]:
    if request.param == "sqlite":
        opened = sqlite_source(data_dir / "source.sqlite3")
    else:
        opened = postgres_source()
    with opened as db:
        use_source(settings, processes, db.url)
        yield db


def verify(processes: Processes, job: ReindexJob) -> dict[str, Any]:
    done = processes.run("reindex", "verify", str(job.pk), "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def test_sql_job__completes_with_its_bad_rows_recorded_as_failures_and_verifies_clean(
    source_db: SourceDatabase, make_job: MakeJob, processes: Processes
) -> None:
    source_db.articles(good_rows(GOOD) + BAD_ROWS)
    job = make_job(ARTICLES, batch_size=25)

    code, _, err = finish(processes.worker("w-sql"))
    assert code == 0, err

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    total = GOOD + len(BAD_ROWS)
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (total, total, len(BAD_ROWS))
    failures = list(job.failures.all())
    assert {f.locator for f in failures} == BAD_LOCATORS
    assert {f.error_type for f in failures} == {MALFORMED_ERROR}
    assert job.checkpoint["last_id"] == f"doc-{GOOD - 1:04d}"
    report = verify(processes, job)
    assert (report["missing"], report["duplicates"]) == (0, 0)
    assert report["in_store"] == report["source_docs"] == GOOD


def test_sql_job__a_sigtermed_worker_hands_back_its_last_id_and_the_next_one_finishes(
    source_db: SourceDatabase,
    make_job: MakeJob,
    processes: Processes,
    run_burst_worker: Callable[..., None],
) -> None:
    source_db.articles(good_rows(500))
    job = make_job(ARTICLES, batch_size=10, store=SLOW_STORE)
    first = processes.worker("w-leaving", burst=False)
    wait_until(lambda: row(job).processed_docs >= 30, what="30 rows written")
    first.send_signal(signal.SIGTERM)
    code, _, err = finish(first)
    assert code == 0, err

    handed = row(job)
    assert handed.status == JobStatus.PENDING
    assert 30 <= handed.processed_docs < 500
    # The checkpoint is the last id handed out: the batches so far were rows 0 .. processed-1.
    assert handed.checkpoint["last_id"] == f"doc-{handed.processed_docs - 1:04d}"

    run_burst_worker("w-next")
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.processed_docs, job.failed_docs, job.batches_done) == (500, 0, 50)
    assert event_kinds(job)[-3:] == ["claimed", "checkpoint_resumed", "completed"]
    report = verify(processes, job)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (500, 0, 0)


class TcpProxy:
    """A real TCP forwarder to PostgreSQL that a test can cut (connections drop, new ones are
    refused) and restore on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port = int(self._listener.getsockname()[1])

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        # shutdown() first: a bare close() leaves a thread blocked in accept() and the port open.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._listener = self._listen(self.port)


def test_sql_job__a_source_server_that_stays_away_fails_the_job_and_a_resume_finishes_it(
    data_dir: Path, settings: Any, make_job: MakeJob, processes: Processes
) -> None:
    with postgres_source() as db:
        db.articles(good_rows(500))
        proxy = TcpProxy(PG_ADDRESS)
        name = db.url.rsplit("/", 1)[1]
        use_source(settings, processes, f"postgres://postgres@127.0.0.1:{proxy.port}/{name}")
        job = make_job(ARTICLES, batch_size=10, store=SLOW_STORE)
        worker = processes.worker("w-outage")
        wait_until(lambda: row(job).processed_docs >= 30, what="30 rows written")
        proxy.cut()
        wait_until(lambda: row(job).status == JobStatus.FAILED, what="the breaker to fail it")
        code, _, err = finish(worker)
        assert code == 0, err
        failed = row(job)
        assert "the database at REINDEXER_SQL_SOURCE_URL is unreachable" in failed.error
        assert "12 transient failures in a row" in failed.error
        assert "retry" in err  # each retry is logged as it happens
        at_failure = failed.processed_docs
        assert 30 <= at_failure < 500

        proxy.restore()
        resumed = processes.run("reindex", "resume", str(job.pk))
        assert resumed.returncode == 0, resumed.stderr
        code, _, err = finish(processes.worker("w-after"))
        assert code == 0, err

        done = row(job)
        assert done.status == JobStatus.COMPLETED, done.error
        assert (done.processed_docs, done.failed_docs) == (500, 0)
        report = verify(processes, job)
        assert (report["in_store"], report["missing"], report["duplicates"]) == (500, 0, 0)
        proxy.cut()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("sql:missing", "table 'missing' does not exist in the database at REINDEXER_SQL_SOURCE"),
        ("sql:articles(id=slug,text=content)", "table 'articles' has no column 'content'"),
        ("sql:articles;delete from articles", "must be a plain SQL name"),
        ('sql:articles(id=slug" or 1=1 --)', "must be a plain SQL name"),
    ],
)
def test_create__refuses_a_table_or_column_that_does_not_exist_or_a_hostile_name(
    source_db: SourceDatabase, source: str, message: str
) -> None:
    source_db.articles(good_rows(3))

    with pytest.raises(SpecError, match=message) as refused:
        create_job(JobSpec.parse({"source": source}))
    assert refused.value.field == "source"  # the form shows it beside the source input
    assert ReindexJob.objects.count() == 0


def test_create__refuses_a_sql_source_while_the_setting_is_unset(
    source_db: SourceDatabase, settings: Any, processes: Processes
) -> None:
    source_db.articles(good_rows(3))
    use_source(settings, processes, None)

    with pytest.raises(SpecError, match="REINDEXER_SQL_SOURCE_URL, which is not set"):
        create_job(JobSpec.parse({"source": "sql:articles"}))
    started = processes.run("reindex", "start", "--source", "sql:articles")
    assert started.returncode != 0
    assert "REINDEXER_SQL_SOURCE_URL, which is not set" in started.stderr
    assert ReindexJob.objects.count() == 0
