"""The jobs list's queries at scale: latency, query count and plan of each sort and filter.

    .venv/bin/python bench/list_queries.py [--jobs 200000] [--requests 30]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench_list \
        .venv/bin/python bench/list_queries.py

It builds the same throwaway database as bench/pages.py (its job mix: 40 collections, a
"live-N" collection per running job, two stores), then GETs the list with each sort and filter
through Django's test client as a superuser, and prints p50/p95, the query count and whether the
plan of the rows query sorts (SQLite: "USE TEMP B-TREE"; PostgreSQL: a Sort node over the table,
as opposed to an Incremental Sort over an index's order).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_MS = 100.0
CHUNK = 5_000
# The share of each status among the jobs: mostly history, a few live ones (as bench/pages.py).
RUNNING_EVERY, PENDING_EVERY, FAILED_EVERY, CANCELLED_EVERY = 100, 97, 31, 53


def setup_django(data_dir: Path) -> str:
    """Django on a throwaway database; returns the name to restore when it is dropped."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=str(data_dir),
        DJANGO_ALLOWED_HOSTS="testserver",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.db import connection

    old_name: str = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        connection.settings_dict.setdefault("TEST", {})["NAME"] = old_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    return old_name


def _job_fields(n: int, now: datetime) -> dict[str, Any]:
    """The n-th job: one a minute back in time; 40 collections, two stores."""
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
    fields.update(started_at=created, worker=f"worker-{n % 4}", processed_docs=n % 1_000)
    if n % RUNNING_EVERY == 0:
        return {
            **fields,
            "status": "running",
            "collection": f"live-{n}",  # one running writer per collection
            "lease_token": uuid.uuid4(),
            "heartbeat_at": now,
        }
    finished = created + timedelta(seconds=50)
    if n % FAILED_EVERY == 0:
        return {**fields, "status": "failed", "finished_at": finished, "error": "too many"}
    if n % CANCELLED_EVERY == 0:
        return {**fields, "status": "cancelled", "finished_at": finished}
    return {**fields, "status": "completed", "finished_at": finished, "failed_docs": n % 3}


def add_jobs(count: int, now: datetime) -> None:
    from reindexer.models import ReindexJob

    for first in range(1, count + 1, CHUNK):
        numbers = range(first, min(first + CHUNK, count + 1))
        ReindexJob.objects.bulk_create(ReindexJob(**_job_fields(n, now)) for n in numbers)


def analyze() -> None:
    """Fresh planner statistics (and PostgreSQL's visibility map, as autovacuum keeps it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def explain(sql: str) -> str:
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        rows = cursor.fetchall()
    return "\n".join("      " + " ".join(str(c) for c in row) for row in rows)


def urls(today: str, week_ago: str) -> list[tuple[str, str]]:
    return [
        ("default (newest first)", "/"),
        ("tab: completed", "/?status=completed"),
        ("tab: running", "/?status=running"),
        ("store filter", "/?store=sqlite-vec"),
        ("collection filter", "/?collection=coll-7"),
        ("created range (a week)", f"/?created_from={week_ago}&created_to={today}"),
        (
            "all filters + tab",
            f"/?status=completed&store=sqlite-vec&collection=coll-7"
            f"&created_from={week_ago}&created_to={today}",
        ),
        ("sort: oldest first", "/?sort=created"),
        ("sort: name", "/?sort=name"),
        ("sort: status", "/?sort=status"),
        ("sort: most processed (no index)", "/?sort=-processed"),
        ("sort: most failed (no index)", "/?sort=-failed"),
        ("tab failed, most failed", "/?status=failed&sort=-failed"),
        ("search by name", "/?q=job+1999"),
        ("page 40", "/?page=40"),
        ("htmx panel", "/"),
    ]


def measure(client: Any, url: str, requests: int, htmx: bool) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = {"HX-Request": "true", "HX-Target": "jobs-panel"} if htmx else {}
    for _ in range(3):
        response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"{url}: status {response.status_code}")
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as captured:
        client.get(url, headers=headers)
    queries = list(captured.captured_queries)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    rows_sql = next(
        q["sql"] for q in queries if "LIMIT 25" in q["sql"] and "reindexjob" in q["sql"]
    )
    return {
        "p50": statistics.median(times),
        "p95": times[max(0, int(len(times) * 0.95) - 1)],
        "queries": len(queries),
        "rows_sql": rows_sql,
        "slowest": max(queries, key=lambda q: float(q["time"])),
    }


def list_queries_ms(url: str, requests: int) -> tuple[float, float]:
    """p50 and p95 of the list's own queries alone (the tabs' counts, the rows, the filters'
    choices), without the page's other panels (summary tiles, sparklines) or the session."""
    from urllib.parse import parse_qs, urlsplit

    from django.http import QueryDict

    from dashboard.list_forms import JobListForm
    from dashboard.list_query import distinct_values, status_counts

    query = QueryDict(urlsplit(url).query)
    page = int(parse_qs(urlsplit(url).query).get("page", ["1"])[0])
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        form = JobListForm(query)
        form.is_valid()
        filters = form.filters()
        counts = status_counts(filters.without_status())
        matches = counts[filters.status or "all"].n
        list(filters.jobs(matches=matches)[(page - 1) * 25 : page * 25])
        distinct_values("store"), distinct_values("collection")
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def sorts(plan: str, vendor: str) -> str:
    if "reindexjob_created_order" in plan and (
        "SUBQUERY" in plan or "SubPlan" in plan or "Hash Semi Join" in plan or "Nested Loop" in plan
    ):
        return "sort of the newest SORT_WINDOW matches only"
    if vendor == "sqlite":
        if "USE TEMP B-TREE FOR ORDER BY" in plan:
            return "TEMP B-TREE (whole order)"
        if "USE TEMP B-TREE FOR RIGHT PART" in plan:
            return "temp b-tree for the id tiebreak only"
        return "index order"
    lines = [line.strip() for line in plan.splitlines()]
    if any(
        line.startswith("->  Incremental Sort") or line.startswith("Incremental Sort")
        for line in lines
    ):
        return "incremental sort (index order)"
    if any("Sort" in line and "Incremental" not in line for line in lines):
        return "SORT"
    return "index order"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--plans", action="store_true", help="print every rows query's plan")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-list-") as tmp:
        old_name = setup_django(Path(tmp))
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        try:
            now = timezone.now()
            start = time.perf_counter()
            add_jobs(args.jobs, now)
            analyze()
            print(f"built {args.jobs:,} jobs in {time.perf_counter() - start:.1f} s")
            client = Client()
            client.force_login(User.objects.create_superuser("bench"))
            today = now.date().isoformat()
            week_ago = (now - timedelta(days=7)).date().isoformat()
            vendor = connection.vendor
            print(
                f"{vendor}: p50 / p95 ms over {args.requests} requests (target p95 {TARGET_MS:.0f})"
            )
            for index, (name, url) in enumerate(urls(today, week_ago)):
                htmx = name == "htmx panel"
                figures = measure(client, url, args.requests, htmx)
                plan = explain(figures["rows_sql"])
                own50, own95 = list_queries_ms(url, args.requests)
                ok = "ok  " if own95 <= TARGET_MS else "SLOW"
                print(
                    f"  {ok} {name:34} page {figures['p50']:6.1f} / {figures['p95']:6.1f}"
                    f"  list queries {own50:6.1f} / {own95:6.1f}"
                    f"  {figures['queries']:2d} queries  rows query: {sorts(plan, vendor)}"
                )
                if args.plans or own95 > TARGET_MS:
                    print(plan)
                    slow = figures["slowest"]
                    print(f"      slowest query ({slow['time']} s): {slow['sql'][:300]}")
                if index == 0:
                    counts_sql = "SELECT status, COUNT(*) FROM reindexer_reindexjob GROUP BY status"
                    print("      tabs' counts:", explain(counts_sql).strip().replace("\n", " | "))
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
