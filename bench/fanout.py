"""Live updates to many browsers: commit -> receipt delay, pushes per socket, stale pushes.

    .venv/bin/python bench/fanout.py [--sockets 10,50] [--modes redis,relay] [--seconds 8]

Real daphne (one process, as served), real websockets (a minimal client below, with a logged-in
session), and real commits of three running jobs, each batch committed and published the way the
worker does (a conditional UPDATE of the counters, then `ProgressPublisher.publish`), 30 batches a
second a job (90 in all). Every socket is a jobs list showing the three rows. Printed per mode and
number of sockets:
- p50/p95 commit -> receipt: for each commit and socket, from the commit until the socket received
  a row showing it or a newer state (the staleness the user sees);
- pushes per socket a second;
- pushes after the last state: frames a socket got after it had received every job's final state.

Environment (all optional):
- REINDEXER_BENCH_REDIS_URL: the Redis of the "redis" mode (default redis://127.0.0.1:6379/15;
  the database is flushed of this bench's keys only by its own prefix-free use: pick a spare one);
- REINDEXER_BENCH_SOURCE_ROOTS: extra source roots, added to the throwaway data dir (an inherited
  REINDEXER_SOURCE_ROOTS is ignored: the bench only reads its own data dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
JOBS = 3
BATCHES_PER_SECOND = 30  # per job
TOTAL_DOCS = 1_000_000
BATCH = 10
QUIET_SECONDS = 3.0  # after the last state: anything arriving now is a stale push
ROW = re.compile(r'<tr id="job-row-(\d+)".*?</tr>', re.S)
PROCESSED = re.compile(r'<td class="num">([\d,\s\u202f]+) /')


from tests.browser.wsclient import Socket  # noqa: E402 - after the repository is on the path


def setup_django(data_dir: Path) -> None:
    roots = [
        str(data_dir),
        *filter(None, os.environ.get("REINDEXER_BENCH_SOURCE_ROOTS", "").split(":")),
    ]
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=":".join(roots),
        DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def session_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def running_jobs() -> list[int]:
    from django.utils import timezone

    from reindexer.models import JobStatus, ReindexJob

    return [
        ReindexJob.objects.create(
            name=f"fanout-{i}",
            collection=f"fanout-{uuid.uuid4().hex}",
            source="jsonl:docs.jsonl",
            status=JobStatus.RUNNING,
            total_docs=TOTAL_DOCS,
            lease_token=uuid.uuid4(),
            worker="bench",
            heartbeat_at=timezone.now(),
            started_at=timezone.now(),
        ).pk
        for i in range(JOBS)
    ]


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    commits: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # job -> (t, n)
    received: list[list[tuple[float, dict[int, int]]]] = field(default_factory=list)


def commit_loop(jobs: list[int], seconds: float, run: Run) -> None:
    """The worker's side: per job, a batch commit then a publish, 30 a second a job."""
    from django.db import close_old_connections
    from django.utils import timezone

    from reindexer.models import JobStatus, ReindexJob
    from reindexer.progress import ProgressPublisher

    publisher = ProgressPublisher()
    run.commits = {job: [] for job in jobs}
    interval = 1 / (BATCHES_PER_SECOND * len(jobs))
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < seconds:
        job = jobs[step % len(jobs)]
        processed = (step // len(jobs) + 1) * BATCH
        ReindexJob.objects.filter(pk=job).update(
            processed_docs=processed, batches_done=processed // BATCH, updated_at=timezone.now()
        )
        run.commits[job].append((time.time(), processed))
        publisher.publish(job)
        step += 1
        time.sleep(max(0.0, start + step * interval - time.monotonic()))
    for job in jobs:  # the jobs end: their last state
        final = run.commits[job][-1][1]
        ReindexJob.objects.filter(pk=job).update(
            status=JobStatus.COMPLETED, finished_at=timezone.now(), updated_at=timezone.now()
        )
        run.commits[job].append((time.time(), final))
        publisher.publish(job, force=True)
    publisher.close()
    close_old_connections()


async def listen(socket: Socket, log: list[tuple[float, dict[int, int]]]) -> None:
    while True:
        frame = await socket.receive_text()
        if os.environ.get("BENCH_DEBUG"):
            print("FRAME", frame[:150].replace("\n", " "))
        rows = {}
        for match in ROW.finditer(frame):
            figure = PROCESSED.search(match.group(0))
            done = 'data-status="completed"' in match.group(0)
            value = int(re.sub(r"\D", "", figure.group(1))) if figure else 0
            rows[int(match.group(1))] = value + (1 if done else 0)  # completed: past the last batch
        if rows:
            log.append((time.time(), rows))


async def measure(port: int, cookie: str, sockets: int, seconds: float) -> tuple[Run, list[int]]:
    from dashboard.relay import database_sync_to_async

    jobs = await database_sync_to_async(running_jobs)()
    run = Run(received=[[] for _ in range(sockets)])
    opened = [await Socket.open(port, "/ws/jobs/", cookie) for _ in range(sockets)]
    for socket in opened:
        await socket.send_text('{"shown": [%s]}' % ",".join(map(str, jobs)))  # noqa: UP031
    listeners = [
        asyncio.create_task(listen(s, log)) for s, log in zip(opened, run.received, strict=True)
    ]
    await asyncio.sleep(1.0)  # the catch-up frames
    for log in run.received:
        log.clear()
    thread = threading.Thread(target=commit_loop, args=(jobs, seconds, run))
    thread.start()
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(QUIET_SECONDS)
    for task in listeners:
        task.cancel()
    for socket in opened:
        socket.close()
    return run, jobs


def figures(run: Run, jobs: list[int], seconds: float) -> tuple[list[float], list[int], list[int]]:
    delays: list[float] = []
    pushes: list[int] = []
    after_last: list[int] = []
    finals = {job: run.commits[job][-1][1] + 1 for job in jobs}
    for log in run.received:
        pushes.append(len(log))
        for job in jobs:
            seen = [(t, rows[job]) for t, rows in log if job in rows]
            for t_commit, processed in run.commits[job][:-1]:
                later = [t for t, value in seen if value >= processed and t >= t_commit - 0.05]
                if later:
                    delays.append(min(later) - t_commit)
        done_at = [
            min((t for t, rows in log if rows.get(j) == finals[j]), default=None) for j in jobs
        ]
        if None in done_at:
            after_last.append(-1)  # never saw every final state
            continue
        last = max(t for t in done_at if t is not None)
        after_last.append(sum(1 for t, _ in log if t > last))
    return delays, pushes, after_last


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def run_mode(mode: str, data_dir: Path, counts: list[int], seconds: float) -> None:
    from tests.browser.servers import running_stack

    env = dict(os.environ)
    if mode == "redis":
        env["REDIS_URL"] = os.environ.get("REINDEXER_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    from channels import layers
    from django.conf import settings

    # This process publishes as the worker does: through Redis, or (relay) not at all.
    settings.CHANNEL_LAYERS = {
        "default": (
            {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [env["REDIS_URL"]]},
            }
            if mode == "redis"
            else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
        )
    }
    layers.channel_layers.backends.clear()
    for sockets in counts:
        log_dir = data_dir / f"logs-{mode}-{sockets}"
        log_dir.mkdir()
        with running_stack(env, log_dir, worker=False) as stack:
            port = int(stack.base_url.rsplit(":", 1)[1])
            cookie = session_cookie()
            run, jobs = asyncio.run(measure(port, cookie, sockets, seconds))
            if os.environ.get("BENCH_DEBUG"):
                print(stack.logs())
        delays, pushes, after_last = figures(run, jobs, seconds)
        label = "Redis" if mode == "redis" else "relay (no Redis)"
        print(
            f"{label:17} {sockets:3} sockets: commit->receipt p50 {pct(delays, 50) * 1000:5.0f} ms"
            f"  p95 {pct(delays, 95) * 1000:5.0f} ms   pushes/socket/s "
            f"{statistics.mean(pushes) / seconds:4.1f}   after the last state: "
            f"max {max(after_last)} (sum {sum(after_last)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", default="10,50")
    parser.add_argument("--modes", default="redis,relay")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.sockets.split(",")]
    print(f"{JOBS} jobs, {BATCHES_PER_SECOND * JOBS} batch commits a second, {args.seconds:.0f} s")
    with tempfile.TemporaryDirectory(prefix="reindexer-bench-fanout-") as tmp:
        setup_django(Path(tmp))
        for mode in args.modes.split(","):
            run_mode(mode.strip(), Path(tmp), counts, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
