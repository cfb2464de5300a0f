"""A sliced job over each kind of source (a JSONL file, a directory, a `sql:` table of SQLite and
of PostgreSQL), on the suite's job database: every slice completes, the job's counters are its
slices' sums, and `reindex verify` finds nothing missing and nothing written twice."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.integration.conftest import Processes, wait_for_output, wait_until
from tests.integration.fleet import Fleet, cli_verify, events, row, slices_of, timeline
from tests.sql_databases import Run, postgres_runner, sqlite_runner, throwaway_postgres

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
ARTICLES = "sql:articles(id=slug,text=body,metadata=tags)"


@dataclasses.dataclass(frozen=True)
class SourceCase:
    """A source written for one test: its spec, its records, and the malformed ones among them."""

    spec: str
    records: int
    malformed: int

    @property
    def good(self) -> int:
        return self.records - self.malformed


def jsonl_case(data_dir: Path, good: int) -> SourceCase:
    lines = [
        json.dumps({"id": f"doc-{i}", "text": f"document {i} of the corpus"}) for i in range(good)
    ]
    # Blank lines (no records), a line that is no JSON, and a repeat of an id of the first slice
    # in the last one: it must be caught there as a single reader would catch it.
    lines[good // 2 : good // 2] = ["", "   ", "{not json"]
    lines.append(json.dumps({"id": "doc-1", "text": "the same id again"}))
    (data_dir / "docs.jsonl").write_text("".join(line + "\n" for line in lines))
    return SourceCase("jsonl:docs.jsonl", good + 2, 2)


def directory_case(data_dir: Path, good: int) -> SourceCase:
    root = data_dir / "notes"
    for i in range(good + 1):
        folder = root / f"part-{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        # One empty file: malformed.
        (folder / f"note-{i:03}.md").write_text("" if i == good else f"# Note {i}\n\nbody {i}")
    return SourceCase("directory:notes", good + 1, 1)


def sql_case(run: Run, good: int) -> SourceCase:
    # No primary key: a NULL id (the first slice's) and a repeated id can be stored.
    run("create table articles (slug text, body text, tags text)", [])
    rows: list[tuple[Any, Any, Any]] = [
        (f"doc-{i:04d}", f"article {i} about topic {i % 7}", json.dumps({"n": i}))
        for i in range(good)
    ]
    rows += [(None, "a NULL id", "{}"), ("doc-0003", "the same id again", "{}")]
    rows += [("bad-null-text", None, "{}")]
    run("insert into articles (slug, body, tags) values (?, ?, ?)", rows)
    return SourceCase(ARTICLES, good + 3, 3)


def use_sql_source(settings: Any, processes: Processes, url: str) -> None:
    """This process (the in-process worker) and its subprocesses (verify) read `url`."""
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, sql_source_url=url)
    processes.env["REINDEXER_SQL_SOURCE_URL"] = url


@pytest.fixture(params=["jsonl", "directory", "sql-sqlite", "sql-postgres"])
def source_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def write_source(
    source_kind: str, data_dir: Path, settings: Any, processes: Processes
) -> Iterator[Callable[[int], SourceCase]]:
    """Writes a source of `source_kind` with that many good records (and a few bad ones)."""
    if source_kind == "jsonl":
        yield lambda good: jsonl_case(data_dir, good)
    elif source_kind == "directory":
        yield lambda good: directory_case(data_dir, good)
    elif source_kind == "sql-sqlite":
        path = data_dir / "source.sqlite3"
        use_sql_source(settings, processes, f"sqlite:///{path}")
        yield lambda good: sql_case(sqlite_runner(path), good)
    else:
        with throwaway_postgres() as url:
            use_sql_source(settings, processes, url)
            yield lambda good: sql_case(postgres_runner(url), good)


def assert_completed_with_every_slice(job: ReindexJob, case: SourceCase, slices: int) -> None:
    job = row(job)
    assert job.status == JobStatus.COMPLETED, (job.error, timeline(job))
    parts = slices_of(job)
    assert len(parts) == slices, timeline(job)
    assert [s.status for s in parts] == [JobStatus.COMPLETED] * slices, timeline(job)
    for part in parts:
        assert part.processed_docs == part.total_docs, (part.slice_number, part.slice_bounds)
        assert len(events(part, EventKind.CLAIMED)) == 1, timeline(job)
    assert sum(s.total_docs or 0 for s in parts) == job.total_docs == case.records
    assert sum(s.processed_docs for s in parts) == job.processed_docs == case.records
    assert sum(s.failed_docs for s in parts) == job.failed_docs == case.malformed


def assert_verifies_clean(processes: Processes, job: ReindexJob, case: SourceCase) -> None:
    report = cli_verify(processes, job)
    assert (report["missing"], report["duplicates"]) == (0, 0), report
    assert report["in_store"] == report["source_docs"] == case.good, report


def test_sliced_job__over_each_source_completes_every_slice_and_verifies_clean(
    write_source: Callable[[int], SourceCase],
    make_job: MakeJob,
    processes: Processes,
    run_burst_worker: Callable[..., None],
) -> None:
    case = write_source(90)
    job = make_job(case.spec, batch_size=10, slices=3, collection="sliced")

    run_burst_worker("w-alone")

    assert_completed_with_every_slice(job, case, 3)
    bounds = [s.slice_bounds for s in slices_of(job)]
    assert len({json.dumps(b, sort_keys=True) for b in bounds}) == 3, bounds
    assert_verifies_clean(processes, job, case)


@pytest.mark.parametrize("source_kind", ["sql-sqlite", "sql-postgres"], indirect=True)
def test_sliced_sql_job__two_worker_processes_share_its_id_ranges_and_verify_clean(
    write_source: Callable[[int], SourceCase], make_job: MakeJob, processes: Processes
) -> None:
    case = write_source(160)
    fleet = Fleet(processes)
    for name in ("w1", "w2"):
        # Both idle before the job exists, so that neither finds the queue empty and leaves.
        wait_for_output(fleet.start(name), "idle, waiting for a job")
    # About 1 s of writing per slice (5 batches of 200 ms): long enough for both to take some.
    job = make_job(case.spec, batch_size=10, slices=4, store="flaky(sqlite-vec,latency=200)")

    wait_until(lambda: row(job).is_finished, timeout=60, what="the sliced job to end")
    fleet.stop()

    assert_completed_with_every_slice(job, case, 4)
    ran_on = {events(part, EventKind.CLAIMED)[0].actor for part in slices_of(job)}
    assert ran_on == {"w1", "w2"}, timeline(job)
    # The first id range holds the NULL id, and the cuts are ids of the table.
    first = slices_of(job)[0]
    assert first.slice_bounds["after"] is None
    assert first.failures.filter(locator="row 1 with a NULL id").count() == 1
    assert_verifies_clean(processes, job, case)
