"""How the dashboard's sockets coalesce progress: pushes per job for the messages sent (a bench).

    .venv/bin/python bench/push_rate.py [--messages 50] [--interval 0.02]

The figures the consumer tests no longer assert (they check order and outcome only): for two
running jobs on the jobs list socket, `--messages` progress messages a job, one every
`--interval` seconds, then how many pushes each job got, how far apart they arrived (the
consumer's limit is one push per job per MIN_PUSH_INTERVAL), and a burst of 20 messages at once
to one job's socket. Through the real ASGI application and channel layer, on a throwaway SQLite
database.

Environment (optional): REINDEXER_BENCH_SOURCE_ROOTS, extra source roots after the throwaway data
dir; an inherited REINDEXER_SOURCE_ROOTS is replaced. No Redis is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUIET_SECONDS = 1.0  # after the last message: long enough for the consumer's deferred push


def setup_django(data_dir: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=":".join(
            [
                str(data_dir),
                *filter(None, os.environ.get("REINDEXER_BENCH_SOURCE_ROOTS", "").split(":")),
            ]
        ),
        DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def session_cookie() -> bytes:
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user("bench-viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


def running_job(name: str) -> int:
    from django.utils import timezone

    from reindexer.models import JobStatus, ReindexJob

    return ReindexJob.objects.create(
        name=name,
        source="jsonl:docs.jsonl",
        collection=f"push-rate-{uuid.uuid4().hex}",  # one running job per collection
        status=JobStatus.RUNNING,
        total_docs=100,
        lease_token=uuid.uuid4(),
        worker="bench",
        heartbeat_at=timezone.now(),
    ).pk


def set_processed(job_id: int, processed: int) -> None:
    from django.utils import timezone

    from reindexer.models import ReindexJob

    ReindexJob.objects.filter(pk=job_id).update(processed_docs=processed, updated_at=timezone.now())


async def socket(path: str, cookie: bytes) -> Any:
    from channels.testing import WebsocketCommunicator

    from reindexer.asgi import application

    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    if not connected:
        sys.exit(f"the socket {path} was refused")
    await communicator.receive_from(timeout=10)  # the current state, sent on connect
    return communicator


async def collect(communicator: Any, received: list[tuple[float, str]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        frame = await communicator.receive_from(timeout=3600)
        received.append((loop.time(), frame))


async def steady(cookie: bytes, messages: int, interval: float) -> None:
    from channels.layers import get_channel_layer

    from dashboard.relay import database_sync_to_async
    from reindexer.progress import JOBS_GROUP, progress_message

    jobs = [await database_sync_to_async(running_job)(f"steady-{n}") for n in (1, 2)]
    communicator = await socket("/ws/jobs/", cookie)
    await communicator.send_to(text_data=json.dumps({"shown": jobs}))  # as live.js does
    received: list[tuple[float, str]] = []
    collector = asyncio.create_task(collect(communicator, received))
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(1, messages + 1):
        await database_sync_to_async(set_processed)(jobs[0], i)
        for job_id in jobs:
            await layer.group_send(JOBS_GROUP, progress_message(job_id))
        await asyncio.sleep(interval)
    sent_for = loop.time() - start
    await asyncio.sleep(QUIET_SECONDS)
    collector.cancel()
    await communicator.disconnect()
    print(f"steady: {messages} messages a job over {sent_for:.2f} s, to the jobs list socket")
    for job_id in jobs:
        times = [t for t, frame in received if f"job-row-{job_id}" in frame]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        rate = len(times) / sent_for
        smallest = f", smallest gap {min(gaps):.3f} s" if gaps else ""
        print(f"  job {job_id}: {len(times)} pushes ({rate:.1f} a second){smallest}")


async def burst(cookie: bytes, messages: int) -> None:
    from channels.layers import get_channel_layer

    from dashboard.fanout import MIN_PUSH_INTERVAL
    from dashboard.relay import database_sync_to_async
    from reindexer.progress import job_group, progress_message

    job_id = await database_sync_to_async(running_job)("burst")
    communicator = await socket(f"/ws/jobs/{job_id}/", cookie)
    await asyncio.sleep(MIN_PUSH_INTERVAL * 1.5)  # past the window of the state sent on connect
    received: list[tuple[float, str]] = []
    collector = asyncio.create_task(collect(communicator, received))
    layer = get_channel_layer()
    for i in range(messages):
        await database_sync_to_async(set_processed)(job_id, i + 1)  # each a new state
        await layer.group_send(job_group(job_id), progress_message(job_id))
    await asyncio.sleep(QUIET_SECONDS)
    collector.cancel()
    await communicator.disconnect()
    print(f"burst: {messages} messages at once to one job's socket: {len(received)} pushes")


async def run(messages: int, interval: float) -> None:
    from dashboard.fanout import MIN_PUSH_INTERVAL
    from dashboard.relay import database_sync_to_async

    cookie = await database_sync_to_async(session_cookie)()
    print(f"the consumer's limit: one push per job every {MIN_PUSH_INTERVAL} s")
    await steady(cookie, messages, interval)
    await burst(cookie, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reindexer-bench-push-") as tmp:
        setup_django(Path(tmp))
        asyncio.run(run(args.messages, args.interval))


if __name__ == "__main__":
    main()
