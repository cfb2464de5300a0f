"""The queue page and the claim query with a long queue: latency and query count.

    .venv/bin/python bench/queue_page.py [--pending 200000] [--requests 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench_queue \
        .venv/bin/python bench/queue_page.py

A throwaway database holds `--pending` pending jobs over 40 collections, with 20 running jobs
writing 20 of them (so half the queue waits for a running writer, the rest for the job ahead).
It GETs /queue/ (first page, a deep page, the htmx refresh; tests/dashboard/test_queue_page.py
holds its query count) and times `claimable().first()`
(the worker's claim read, with its NOT EXISTS on the running writers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pages import settle, setup_django  # noqa: E402

COLLECTIONS, RUNNING, CHUNK = 40, 20, 5_000


def build(pending: int) -> None:
    from django.utils import timezone

    from reindexer.models import ReindexJob

    now = timezone.now()
    ReindexJob.objects.bulk_create(
        ReindexJob(
            name=f"writer {n}",
            source="jsonl:docs.jsonl",
            collection=f"coll-{n}",
            status="running",
            worker=f"worker-{n}",
            lease_token=uuid.uuid4(),
            started_at=now,
            heartbeat_at=now,
            created_at=now - timedelta(days=1),
        )
        for n in range(RUNNING)
    )
    for first in range(0, pending, CHUNK):
        ReindexJob.objects.bulk_create(
            ReindexJob(
                name=f"queued {n}",
                source="jsonl:docs.jsonl",
                collection=f"coll-{n % COLLECTIONS}",
                created_at=now - timedelta(seconds=pending - n),
            )
            for n in range(first, min(first + CHUNK, pending))
        )


def timed(call: Any, requests: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reindexer-bench-queue-") as tmp:
        old_name = setup_django(Path(tmp))
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client

        from reindexer.models import ReindexJob

        try:
            start = time.perf_counter()
            build(args.pending)
            settle()
            print(f"{connection.vendor}: built {args.pending:,} pending jobs in ", end="")
            print(f"{time.perf_counter() - start:.1f} s")
            client = Client()
            client.force_login(User.objects.create_superuser("bench"))
            deep = args.pending // 50 // 2
            for label, url, headers in [
                ("queue, first page", "/queue/", {}),
                (f"queue, page {deep}", f"/queue/?page={deep}", {}),
                ("queue, htmx refresh", "/queue/", {"HX-Request": "true"}),
            ]:
                status = client.get(url, headers=headers).status_code
                if status != 200:
                    raise SystemExit(f"{url}: status {status}")
                ms = timed(lambda u=url, h=headers: client.get(u, headers=h), args.requests)
                print(f"  {label:<24} p50 {ms:7.1f} ms")

            def claim_read() -> None:
                ReindexJob.objects.claimable(30.0).first()

            print(f"  {'claim read':<24} p50 {timed(claim_read, args.requests):7.1f} ms")
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
