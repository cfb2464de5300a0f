"""What many sockets cost Redis, against a redis-server of the test's own and a real daphne: one
group member per web process (not per socket), gone when its sockets close, and a killed
process's member dropped by the group expiry."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import JOBS_GROUP, job_group
from tests.browser.servers import RedisServer, Stack, env_without, running_stack
from tests.browser.wsclient import Socket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SOCKETS = 20
# Longer than the hub's re-join tick (5 s), so that a live process never drops out.
GROUP_EXPIRY_SECONDS = 8
DEADLINE_SECONDS = 30.0


@pytest.fixture
def redis_stack(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path, transactional_db: None
) -> Iterator[Stack]:
    env = {
        **env_without(worker_env, "REDIS_URL"),
        "REDIS_URL": redis_server.url,
        "REINDEXER_CHANNEL_GROUP_EXPIRY": str(GROUP_EXPIRY_SECONDS),
        # The sessions are made in this process (no browser logs in): daphne must read them.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
    }
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with running_stack(env, log_dir, worker=False) as stack:
        yield stack


def cookie_of(user: User) -> str:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def members(server: RedisServer, group: str) -> int:
    with redis.Redis(port=server.port) as client:
        return int(client.zcard(f"asgi:group:{group}"))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_SECONDS:.0f} s: {what}"
        time.sleep(0.1)


async def open_sockets(stack: Stack, path: str, cookie: str, n: int) -> list[Socket]:
    sockets = [await Socket.open(stack.port, path, cookie) for _ in range(n)]
    for socket in sockets:
        await socket.receive_text()  # the catch-up: the socket is subscribed
    return sockets


async def close_all(sockets: list[Socket]) -> None:
    for socket in sockets:
        await socket.close_cleanly()


def test_redis_groups__one_member_per_process__left_on_close__expired_after_a_kill(
    redis_stack: Stack, redis_server: RedisServer, viewer: User
) -> None:
    job_id = ReindexJob.objects.create(
        name="watched",
        source="jsonl:docs.jsonl",
        status=JobStatus.RUNNING,
        total_docs=10,
        lease_token=uuid.uuid4(),
        worker="w",
        heartbeat_at=timezone.now(),
    ).pk
    cookie = cookie_of(viewer)

    async def scenario() -> None:
        lists = await open_sockets(redis_stack, "/ws/jobs/", cookie, SOCKETS)
        details = await open_sockets(redis_stack, f"/ws/jobs/{job_id}/", cookie, SOCKETS)
        # 40 sockets, one member in each group: the process's hub.
        assert members(redis_server, JOBS_GROUP) == 1
        assert members(redis_server, job_group(job_id)) == 1
        await close_all(lists)
        await asyncio.to_thread(
            wait_until, lambda: members(redis_server, JOBS_GROUP) == 0, "the list group emptied"
        )
        assert members(redis_server, job_group(job_id)) == 1
        # A killed daphne cleans nothing up: its member stays until the group expiry.
        redis_stack.kill_daphne()
        assert members(redis_server, job_group(job_id)) == 1
        for socket in details:
            socket.close()

    try:
        asyncio.run(scenario())
    except Exception:
        print(redis_stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
    time.sleep(GROUP_EXPIRY_SECONDS + 1)
    redis_stack.start_daphne()

    async def after_restart() -> None:
        # Joining prunes the expired members: only the new process is left in the group.
        sockets = await open_sockets(redis_stack, f"/ws/jobs/{job_id}/", cookie, 1)
        assert members(redis_server, job_group(job_id)) == 1
        await close_all(sockets)

    asyncio.run(after_restart())
    wait_until(lambda: members(redis_server, job_group(job_id)) == 0, "the job group emptied")
