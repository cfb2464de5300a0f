"""Pickup: enqueue to running, with idle workers, on PostgreSQL (NOTIFY) and on SQLite (polling).

    .venv/bin/python bench/pickup.py [--jobs 50] [--workers 2] [--pg-poll 60]

Each backend runs in a child process of its own (Django holds one database per process), on a
throwaway database: on PostgreSQL `reindexer_bench_pickup` on 127.0.0.1:5432 (created here and
dropped at the end; REINDEXER_BENCH_PICKUP_URL names another), on SQLite a file in a temporary
data dir. Two `reindex_worker` subprocesses start and go idle; then `--jobs` jobs of five
documents are queued one at a time through `create_job`, each once the previous one completed
and the workers are idle again, after a random pause (so that a job lands anywhere in a poll).
The figure is the job's `started_at` (the claim, on the database's clock) minus its
`created_at` (this process's clock, taken as `create_job` builds the row; the same machine).

On PostgreSQL the workers poll every `--pg-poll` seconds (60 by default), so what wakes them is
the NOTIFY; on SQLite they poll at REINDEXER_POLL_SECONDS (0.25 s by default). Targets at p95:
200 ms on PostgreSQL, 1 s on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_URL = os.environ.get(
    "REINDEXER_BENCH_PICKUP_URL", "postgres://postgres@127.0.0.1:5432/reindexer_bench_pickup"
)
TARGETS_P95 = {"postgresql": 0.200, "sqlite": 1.0}
LABELS = {"postgresql": "PostgreSQL, LISTEN/NOTIFY", "sqlite": "SQLite, polling"}
RESULT_PREFIX = "PICKUP-RESULT "
IDLE = ": idle, waiting for a job"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_corpus(path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps({"id": f"doc-{i}", "text": f"document {i} for the pickup"}) + "\n")


def wait_for(predicate: Any, what: str, timeout: float = 60.0, interval: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Workers:
    """`count` idle `reindex_worker` subprocesses, logging into files of the data dir."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.logs = [log_dir / f"worker-{n}.log" for n in range(1, count + 1)]
        self.procs = []
        for n, log in enumerate(self.logs, start=1):
            with log.open("w") as out:
                self.procs.append(
                    subprocess.Popen(  # noqa: S603 - this interpreter, our own manage.py
                        [
                            sys.executable,
                            str(REPO_ROOT / "manage.py"),
                            "reindex_worker",
                            "--worker-id",
                            f"bench-{n}",
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def idle_spells(self) -> int:
        """How many times, summed over the workers, a worker found nothing to do."""
        return sum(log.read_text(errors="replace").count(IDLE) for log in self.logs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


def measure(jobs: int, workers: int, pg_poll: float) -> dict[str, Any]:
    """In the child: the pickup latencies (seconds) of `jobs` jobs on this process's database."""
    from pages import setup_django

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-pickup-") as tmp:
        data_dir = Path(tmp)
        old_name = setup_django(data_dir)
        from django.db import connection

        from reindexer.jobs import create_job
        from reindexer.models import JobStatus, ReindexJob
        from reindexer.specs import JobSpec

        vendor = connection.vendor
        write_corpus(data_dir / "docs.jsonl")
        env = {k: v for k, v in os.environ.items() if k != "REINDEXER_POLL_SECONDS"}
        if vendor == "postgresql":
            env["DATABASE_URL"] = PG_URL
            env["REINDEXER_POLL_SECONDS"] = f"{pg_poll:g}"
        else:
            env["DATABASE_URL"] = f"sqlite:///{connection.settings_dict['NAME']}"
            env["REINDEXER_POLL_SECONDS"] = os.environ.get("REINDEXER_POLL_SECONDS", "0.25")
        pool = Workers(workers, env, data_dir)
        samples: list[float] = []
        try:
            wait_for(lambda: pool.idle_spells() >= workers, "the workers to go idle")
            for n in range(jobs):
                spells = pool.idle_spells()
                spec = JobSpec(source="jsonl:docs.jsonl", collection="pickup", name=f"p{n}")
                job = create_job(spec)
                wait_for(
                    lambda j=job: ReindexJob.objects.filter(
                        pk=j.pk, status=JobStatus.COMPLETED
                    ).exists(),
                    f"job {job.pk} to complete",
                )
                job.refresh_from_db()
                if job.started_at is None:
                    raise SystemExit(f"job {job.pk} completed without a start time")
                samples.append((job.started_at - job.created_at).total_seconds())
                # Its worker is idle again before the next job, which lands at a random point
                # of the workers' polls.
                wait_for(lambda s=spells: pool.idle_spells() > s, "the worker to go idle again")
                time.sleep(random.uniform(0.05, 0.3))
        finally:
            pool.stop()
            connection.creation.destroy_test_db(old_name, verbosity=0)
        return {"vendor": vendor, "samples": samples, "poll": env["REINDEXER_POLL_SECONDS"]}


def run_child(vendor: str, args: argparse.Namespace) -> dict[str, Any] | None:
    env = dict(os.environ)
    if vendor == "postgresql":
        env["DATABASE_URL"] = PG_URL
    else:
        env.pop("DATABASE_URL", None)
    argv = [sys.executable, __file__, "--child", f"--jobs={args.jobs}"]
    argv += [f"--workers={args.workers}", f"--pg-poll={args.pg_poll}"]
    # This interpreter, this script.
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    print(f"\n== {LABELS[vendor]}: NOT MEASURED\n{done.stderr[-2000:]}", file=sys.stderr)
    return None


def postgres_problem() -> str | None:
    import psycopg

    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def report(result: dict[str, Any], jobs: int, workers: int) -> bool:
    samples = result["samples"]
    target = TARGETS_P95[result["vendor"]]
    p95 = pct(samples, 95)
    print(f"\n== {LABELS[result['vendor']]} (poll {result['poll']} s, {workers} idle workers)")
    print(
        f"  enqueue -> running: p50 {statistics.median(samples) * 1000:6.0f} ms   "
        f"p95 {p95 * 1000:6.0f} ms   max {max(samples) * 1000:6.0f} ms   (n={len(samples)})"
    )
    met = p95 <= target and len(samples) == jobs
    print(f"    target p95 <= {target * 1000:.0f} ms: {'met' if met else 'MISSED'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-poll", type=float, default=60.0, help="the PostgreSQL workers' poll")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT_PREFIX + json.dumps(measure(args.jobs, args.workers, args.pg_poll)))
        return 0
    all_ok = True
    for vendor in ("postgresql", "sqlite"):
        if vendor == "postgresql" and (problem := postgres_problem()) is not None:
            print(f"\n== {LABELS[vendor]}: NOT MEASURED, 127.0.0.1:5432: {problem}")
            all_ok = False
            continue
        started = time.monotonic()
        result = run_child(vendor, args)
        all_ok = result is not None and report(result, args.jobs, args.workers) and all_ok
        print(f"  ({time.monotonic() - started:.0f} s)")
    return 1 if args.strict and not all_ok else 0


if __name__ == "__main__":
    sys.exit(main())
