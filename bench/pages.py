"""Server time and query count of the busiest pages, with 10,000 and 200,000 jobs.

    .venv/bin/python bench/pages.py [--requests 30] [--sizes 10000,200000] [--failures 10000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench .venv/bin/python bench/pages.py

The data is built in bulk into a throwaway database: SQLite in a temporary data dir, or, on
PostgreSQL, the database DATABASE_URL names (created here and dropped at the end). Then a
logged-in superuser fetches each page through Django's test client, in process (no network, no
server: the time is the view's, middleware and templates included): a few warm-up requests, then
`--requests` timed ones, of which the table shows p50 and p95; and the queries one request runs.
Pages: the jobs list (`/`, `/?status=running`), the admin's job list, and a job's page and admin
change page, that job holding `--failures` failures. The target is 100 ms p95 or less, with a
query count that does not grow with the rows. The CPU column is this process's (for SQLite the
database's too), the SQL column the wall time inside queries: on a busy machine the wall time
swells, they less so. Each query of 10 ms or more (`--slow-ms`) is listed under its page with
its plan, taken right after the page was measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_MS = 100.0
SLOW_QUERY_MS = 10.0  # a query this slow gets its plan printed
WARM_UP = 3
CHUNK = 5_000
# The share of each status among the bulk jobs: mostly history, a few live ones.
# Running jobs are as many as the workers (20 here), not a share of the history.
RUNNING_EVERY, RUNNING_MAX, PENDING_EVERY, FAILED_EVERY, CANCELLED_EVERY = 100, 20, 97, 31, 53


def setup_django(data_dir: Path) -> str:
    """Django on a throwaway database; returns the name to restore when it is dropped."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=str(data_dir),  # whatever the caller's environment said
        DJANGO_ALLOWED_HOSTS="testserver",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.db import connection

    old_name: str = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        # The database named in DATABASE_URL itself (reindexer_bench), not a test_ one beside it.
        connection.settings_dict.setdefault("TEST", {})["NAME"] = old_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    return old_name


def _chunks(start: int, stop: int) -> Iterator[range]:
    for first in range(start, stop, CHUNK):
        yield range(first, min(first + CHUNK, stop))


def _job_fields(n: int, now: datetime) -> dict[str, Any]:
    """The n-th bulk job: one a minute back in time, in a status by the shares above."""
    created = now - timedelta(minutes=n)
    fields: dict[str, Any] = {
        "name": f"bench job {n}",
        "source": "jsonl:docs.jsonl",
        "store": "sqlite-vec" if n % 7 else "flaky(sqlite-vec,transient=0.01)",
        "collection": f"coll-{n % 40}",
        "created_at": created,
        "updated_at": created,
        "total_docs": 1_000,
    }
    if n % PENDING_EVERY == 0:
        return {**fields, "status": "pending"}
    started = created + timedelta(seconds=5)
    fields.update(started_at=started, worker=f"worker-{n % 4}", processed_docs=1_000)
    if n % RUNNING_EVERY == 0 and n <= RUNNING_EVERY * RUNNING_MAX:
        return {
            **fields,
            "status": "running",
            "collection": f"live-{n}",  # one running writer per collection
            "processed_docs": 400,
            "lease_token": uuid.uuid4(),
            "heartbeat_at": now,
        }
    finished = started + timedelta(seconds=50)
    if n % FAILED_EVERY == 0:
        return {**fields, "status": "failed", "finished_at": finished, "error": "too many failures"}
    if n % CANCELLED_EVERY == 0:
        return {**fields, "status": "cancelled", "finished_at": finished}
    return {**fields, "status": "completed", "finished_at": finished, "failed_docs": n % 3}


def add_jobs(start: int, stop: int, now: datetime) -> None:
    from reindexer.models import ReindexJob

    for numbers in _chunks(start, stop):
        ReindexJob.objects.bulk_create(ReindexJob(**_job_fields(n, now)) for n in numbers)


def add_job_with_failures(failures: int, now: datetime) -> int:
    """A failed job, newest of all, with `failures` failures, a timeline and a rate chart."""
    from reindexer.models import BatchFailure, EventKind, JobEvent, JobSample, ReindexJob

    started = now - timedelta(hours=2)
    job = ReindexJob.objects.create(
        name="bench job with failures",
        source="jsonl:docs.jsonl",
        status="failed",
        created_at=now,
        started_at=started,
        finished_at=now,
        total_docs=failures * 20,
        processed_docs=failures * 20,
        failed_docs=failures * 2,
        batches_done=failures * 2,
        batches_failed=failures,
        worker="worker-0",
        error="too many failures",
    )
    error_types = ["PermanentError", "ValueError", "TimeoutError", "MalformedRecord"]
    for numbers in _chunks(0, failures):
        BatchFailure.objects.bulk_create(
            BatchFailure(
                job=job,
                batch_number=2 * n + 1,
                doc_ids=[f"doc-{20 * n + 3}", f"doc-{20 * n + 7}"],
                error_type=error_types[n % len(error_types)],
                message=f"poisoned document doc-{20 * n + 3} <b>&</b>",
                traceback="Traceback (most recent call last):\n" + "  ...\n" * 20 + "Error",
                attempts=3,
                created_at=started + timedelta(seconds=n / 2),
            )
            for n in numbers
        )
    JobEvent.objects.bulk_create(
        [
            JobEvent(job=job, at=started, kind=EventKind.CREATED, actor="bench"),
            JobEvent(job=job, at=started, kind=EventKind.CLAIMED, actor="worker-0"),
            *(
                JobEvent(
                    job=job,
                    at=started + timedelta(minutes=n),
                    kind=EventKind.RECLAIMED,
                    actor="worker-1",
                    detail=f"lease expired; resuming from {n * 1000} processed",
                )
                for n in range(1, 40)
            ),
            JobEvent(job=job, at=now, kind=EventKind.FAILED, actor="worker-0", detail="too many"),
        ]
    )
    JobSample.objects.bulk_create(
        JobSample(
            job=job,
            at=started + timedelta(seconds=15 * n),
            processed=40 * n,
            failed=4 * n,
            retries=n,
        )
        for n in range(480)
    )
    return int(job.pk)


def settle() -> None:
    """The tables as they stand once autovacuum (on PostgreSQL, which also vacuums insert-only
    tables since version 13) or `PRAGMA optimize` has run: planner statistics, and on PostgreSQL
    a visibility map, without which no COUNT can be an index-only scan."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


class SqlTimer:
    """The wall time spent in the database, summed over the queries of the requests."""

    def __init__(self) -> None:
        self.ms = 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.ms += (time.perf_counter() - start) * 1000


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def measure(client: Any, url: str, requests: int, slow_ms: float) -> dict[str, Any]:
    """Wall time (p50, p95), this process's CPU time and the database's time of one request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARM_UP):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url}: status {response.status_code}")
    connection.queries_log.clear()  # a full log (it keeps 9,000) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    queries = captured.captured_queries  # read now: the next request clears the log
    walls, cpus, sqls = [], [], []
    for _ in range(requests):
        timer = SqlTimer()
        with connection.execute_wrapper(timer):
            cpu, wall = time.process_time(), time.perf_counter()
            client.get(url)
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        sqls.append(timer.ms)
    slow = [q for q in queries if float(q["time"]) * 1000 >= slow_ms]
    return {
        "slow": [(float(q["time"]) * 1000, _short(q["sql"]), explain(q["sql"])) for q in slow],
        "p50": statistics.median(walls),
        "p95": _p95(walls),
        "cpu_p95": _p95(cpus),
        "sql_p95": _p95(sqls),
        "queries": len(queries),
        "slowest_ms": max(float(q["time"]) for q in queries) * 1000,
    }


def explain(sql: str) -> str:
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        rows = cursor.fetchall()
    return "\n".join("      " + " ".join(str(c) for c in row) for row in rows)


def pages(job_pk: int) -> list[tuple[str, str]]:
    return [
        ("jobs list", "/"),
        ("jobs list, running", "/?status=running"),
        ("admin job list", "/admin/reindexer/reindexjob/"),
        ("admin job list, running", "/admin/reindexer/reindexjob/?status__exact=running"),
        ("job page", f"/jobs/{job_pk}/"),
        ("admin job change page", f"/admin/reindexer/reindexjob/{job_pk}/change/"),
        ("admin failures of the job", f"/admin/reindexer/batchfailure/?job__exact={job_pk}"),
    ]


def _short(sql: str) -> str:
    """The query without its column list, which says least about its plan."""
    head, found, rest = sql.partition(" FROM ")
    if head.startswith("SELECT ") and found and len(head) > 120:
        head = "SELECT …"
    return (head + found + rest)[:800]


def print_table(rows: list[tuple[int, str, dict[str, Any]]], vendor: str) -> None:
    print(f"\n{vendor}: per request, ms (target: wall p95 <= {TARGET_MS:.0f} ms)")
    print(
        f"{'jobs':>8}  {'page':<27}{'wall p50':>9}{'wall p95':>9}{'cpu p95':>8}{'sql p95':>8}"
        f"{'queries':>8}  slowest query"
    )
    for jobs, name, figures in rows:
        miss = "  MISSES TARGET" if figures["p95"] > TARGET_MS else ""
        print(
            f"{jobs:>8,}  {name:<27}{figures['p50']:>9.1f}{figures['p95']:>9.1f}"
            f"{figures['cpu_p95']:>8.1f}{figures['sql_p95']:>8.1f}{figures['queries']:>8}"
            f"  {figures['slowest_ms']:.0f} ms{miss}"
        )
        for ms, sql, plan in figures["slow"]:
            print(f"    {ms:.0f} ms: {sql}\n{plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--sizes", default="10000,200000", help="job counts, ascending")
    parser.add_argument("--failures", type=int, default=10_000)
    parser.add_argument(
        "--slow-ms", type=float, default=SLOW_QUERY_MS, help="list queries this slow, with plans"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-pages-") as tmp:
        old_name = setup_django(Path(tmp))
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        try:
            now = timezone.now()
            client = Client()
            client.force_login(User.objects.create_superuser("bench"))
            rows: list[tuple[int, str, dict[str, Any]]] = []
            built = 0
            job_pk = 0
            for size in sizes:
                start = time.perf_counter()
                add_jobs(built + 1, size, now)
                if not job_pk:
                    job_pk = add_job_with_failures(args.failures, now)
                built = size - 1
                settle()
                took = time.perf_counter() - start
                print(
                    f"built {size:,} jobs ({args.failures:,} failures on #{job_pk}) in {took:.1f} s"
                )
                for name, url in pages(job_pk):
                    rows.append((size, name, measure(client, url, args.requests, args.slow_ms)))
            print_table(rows, f"{connection.vendor} ({connection.settings_dict['NAME']})")
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
