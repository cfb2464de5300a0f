"""Sliced-job throughput: 1, 2 and 4 worker subprocesses on one job of 4 slices.

    .venv/bin/python bench/slices.py [--docs 12000] [--batch-size 10] [--workers 1,2,4]
                                     [--databases sqlite,postgres] [--rounds 1]

One job of `--slices` slices (4) over a JSONL corpus into `flaky(sqlite-vec,latency=20)`: every
batch write waits 20 ms, as a server store across a network would, so the figure is the slices'
parallelism and not this machine's cores. It has 2: a batch's own CPU (read, hashing embed,
sqlite-vec upsert, checkpoint, the sliced job's counters) must stay well below the 20 ms, or 4
workers only queue for the cores. Hence the small default batch (10 documents: about 5 ms of CPU
a batch here); a batch of 200 would measure the CPU instead.

The job database is a throwaway one: SQLite in a temporary data dir, and PostgreSQL on
127.0.0.1:5432 (the database `reindexer_bench_slices`, created here and dropped at the end).
Each database runs in a child process of its own (Django reads DATABASE_URL once), one after the
other, and the table at the end puts them side by side. For each worker count, the workers start
first and idle (`reindex_worker`, not `--burst`: a burst worker started before the split would
find nothing and exit); then the job is queued, and one of them claims and splits it while the
others claim its slices. The time is the sliced job's own, `started_at` to `finished_at`
(the database's clock); the workers then get SIGTERM. Each run writes a fresh collection, and
`verify` must report 0 missing and 0 duplicates, or the figure is refused.

REINDEXER_PIPELINE is `off` unless `--pipeline` says otherwise, so the figure is the slices' alone
(bench/pipeline.py measures the pipelined engine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET = 3.5  # the speed-up of 4 workers over 1
STORE = "flaky(sqlite-vec,latency=20)"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
POSTGRES_DATABASE = "reindexer_bench_slices"
JOB_TIMEOUT = 900.0
# Short enough that an idle worker finds a new slice quickly (it polls at the heartbeat, at most
# every second, where LISTEN/NOTIFY does not wake it), long enough that no live lease expires.
WORKER_ENV = {
    "REINDEXER_HEARTBEAT_SECONDS": "0.5",
    "REINDEXER_LEASE_SECONDS": "10",
    "REINDEXER_POLL_SECONDS": "0.1",
    "REINDEXER_LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Run:
    database: str
    workers: int
    round: int
    docs: int
    seconds: float  # the sliced job's started_at to finished_at
    slice_workers: dict[str, str]  # slice number -> the worker that claimed it first
    batches: int  # the slices' batches
    worker_cpu: float  # CPU seconds the worker processes used during the job (not the database's)

    @property
    def rate(self) -> float:
        return self.docs / self.seconds


def database_url(database: str, data_dir: Path) -> str:
    if database == "sqlite":
        return f"sqlite:///{data_dir / 'jobs.sqlite3'}"
    return f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}"


def recreate_postgres_database() -> None:
    import psycopg

    url = f"{POSTGRES_SERVER}/postgres"
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL is not reachable at {url}: {exc}") from None
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')


def drop_postgres_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)  # no web process here: nothing listens to the pushes
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def start_workers(
    count: int, env: dict[str, str], logs: Path, tag: str
) -> list[subprocess.Popen[bytes]]:
    """`count` idle workers, returned once each has registered (and so is polling for work)."""
    from reindexer.models import WorkerProcess

    names = [f"bench-{tag}-{n}" for n in range(1, count + 1)]
    procs = []
    for name in names:
        log = (logs / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(  # noqa: S603 - this interpreter, our own manage.py
                [sys.executable, "manage.py", "reindex_worker", "--worker-id", name],
                cwd=REPO,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    deadline = time.monotonic() + 60
    while WorkerProcess.objects.filter(name__in=names, stopped_at=None).count() < count:
        check_alive(procs, logs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not register within 60 s")
        time.sleep(0.2)
    time.sleep(1.0)  # each waits up to 0.5 s of start-up jitter before its first claim
    return procs


def workers_cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) the worker processes have used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in procs:
        # The fields after the command name, which sits in parentheses and may hold spaces.
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def check_alive(procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"a worker exited with {proc.returncode}; see the logs in {logs}")


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_job(
    corpus: Path, collection: str, batch_size: int, slices: int, procs: list[Any], logs: Path
) -> Any:
    from reindexer.jobs import create_job
    from reindexer.specs import JobSpec

    job = create_job(
        JobSpec(
            source=f"jsonl:{corpus.name}",
            store=STORE,
            collection=collection,
            batch_size=batch_size,
            slices=slices,
        )
    )
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        job.refresh_from_db()
        if job.status in {"completed", "failed", "cancelled"}:
            return job
        check_alive(procs, logs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job.pk} still {job.status} after {JOB_TIMEOUT:.0f} s")
        time.sleep(0.2)


def slice_workers(job: Any) -> dict[str, str]:
    """Who ran each slice: the actor of its first `claimed` event."""
    from reindexer.models import EventKind, JobEvent

    claims = (
        JobEvent.objects.filter(job__parent=job, kind=EventKind.CLAIMED)
        .order_by("at", "id")
        .values_list("job__slice_number", "actor")
    )
    ran: dict[str, str] = {}
    for number, actor in claims:
        ran.setdefault(str(number), actor.removeprefix("bench-"))
    return dict(sorted(ran.items()))


def slice_timeline(job: Any) -> str:
    """When each slice started and ended, in seconds after the sliced job's claim: the split's
    cost, the idle workers' pickup and the finish show up against the slices' own work."""
    parts = []
    for started, finished in job.slice_jobs.order_by("slice_number").values_list(
        "started_at", "finished_at"
    ):
        if started is None or finished is None:
            parts.append("?")
            continue
        parts.append(
            f"{(started - job.started_at).total_seconds():.2f}-"
            f"{(finished - job.started_at).total_seconds():.2f}"
        )
    return ", ".join(parts)


def checked_seconds(job: Any) -> float:
    """The job's wall time, once it is known to have written every document exactly once."""
    from reindexer.verify import verify_job

    if job.status != "completed" or job.written_docs != job.total_docs:
        raise RuntimeError(
            f"job {job.pk} ended {job.status} with {job.written_docs} of {job.total_docs} "
            f"written: {job.error}"
        )
    report = verify_job(job)
    if report["missing"] or report["duplicates"]:
        raise RuntimeError(f"job {job.pk}: verify reports {report}")
    assert job.started_at is not None and job.finished_at is not None  # noqa: S101 - completed
    return float((job.finished_at - job.started_at).total_seconds())


def measure(database: str, args: argparse.Namespace) -> list[Run]:
    """Every worker count on `database`, in this (child) process."""
    from throughput import write_corpus

    with tempfile.TemporaryDirectory(prefix=f"reindexer-bench-slices-{database}-") as name:
        data_dir = Path(name)
        logs = data_dir / "logs"
        logs.mkdir()
        env = {
            **WORKER_ENV,
            "REINDEXER_DATA_DIR": str(data_dir),
            "REINDEXER_SOURCE_ROOTS": str(data_dir),
            "REINDEXER_PIPELINE": args.pipeline,
            "DATABASE_URL": database_url(database, data_dir),
        }
        if database == "postgres":
            recreate_postgres_database()
        try:
            setup_django(env)
            import logging

            logging.getLogger("reindexer").setLevel(logging.WARNING)
            corpus = write_corpus(data_dir, args.docs)
            runs = []
            for r in range(1, args.rounds + 1):
                for count in args.workers:
                    procs = start_workers(count, env, logs, f"{database}-{count}w-r{r}")
                    try:
                        cpu_before = workers_cpu(procs)
                        job = run_job(
                            corpus,
                            f"slices_{count}w_r{r}",
                            args.batch_size,
                            args.slices,
                            procs,
                            logs,
                        )
                        cpu = workers_cpu(procs) - cpu_before
                    finally:
                        stop_workers(procs)
                    batches = sum(job.slice_jobs.values_list("batches_done", flat=True))
                    run = Run(
                        database,
                        count,
                        r,
                        args.docs,
                        checked_seconds(job),
                        slice_workers(job),
                        batches,
                        cpu,
                    )
                    print(
                        f"  {database} round {r}, {count} worker(s): {run.rate:,.0f} docs/s "
                        f"({run.seconds:.1f} s); slices run by {run.slice_workers}, "
                        f"from-to (s): {slice_timeline(job)}; worker CPU "
                        f"{1000 * cpu / batches:.1f} ms a batch; {job.retries} retries",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs.append(run)
            return runs
        finally:
            from django.db import connections

            connections.close_all()
            if database == "postgres":
                drop_postgres_database()


def report(runs: list[Run], args: argparse.Namespace) -> bool:
    """The side-by-side table; True when every database meets the target at 4 workers."""
    databases = list(dict.fromkeys(run.database for run in runs))
    best: dict[tuple[str, int], Run] = {}
    for run in runs:
        key = (run.database, run.workers)
        if key not in best or run.seconds < best[key].seconds:
            best[key] = run
    print(
        f"corpus: {args.docs:,} documents, batch size {args.batch_size}, {args.slices} slices, "
        f"hashing + {STORE}, REINDEXER_PIPELINE={args.pipeline}, best of {args.rounds}"
    )
    head = "".join(f"  {db + ' docs/s':>16} {'speed-up':>9}" for db in databases)
    print(f"{'workers':>7}{head}")
    ok = True
    for count in args.workers:
        cells = []
        for db in databases:
            measured, one = best.get((db, count)), best.get((db, 1))
            if measured is None or one is None:
                cells.append(f"  {'-':>16} {'-':>9}")
                ok = ok and count != 4
                continue
            speed_up = measured.rate / one.rate
            if count == 4:
                ok = ok and speed_up >= TARGET
            cells.append(f"  {measured.rate:16,.0f} {speed_up:8.2f}x")
        print(f"{count:>7}{''.join(cells)}")
    print(f"target: >= {TARGET}x with 4 workers over 1 ({'ok' if ok else 'NOT MET'})")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=12_000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=1, help="the best round counts")
    parser.add_argument("--pipeline", choices=("auto", "on", "off"), default="off")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one database, in this process
    args = parser.parse_args(argv)
    args.workers = [int(n) for n in args.workers.split(",")]
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps([asdict(run) for run in measure(args.child, args)]))
        return
    runs: list[Run] = []
    started = time.perf_counter()
    for database in args.databases.split(","):
        child = subprocess.run(  # noqa: S603 - this interpreter, this script
            [sys.executable, __file__, *sys.argv[1:], "--child", database],
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"{database}: not measured (exit {child.returncode})")
        runs.extend(Run(**fields) for fields in json.loads(child.stdout.splitlines()[-1]))
    report(runs, args)
    print(f"whole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
