"""The worker's progress publisher over Redis: throttled, yet the last state always goes out."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from reindexer.progress import JOBS_GROUP, ProgressPublisher
from tests.live.redis_check import redis_url_or_fail

REDIS_DB = 12


@pytest.fixture
def redis_layer(settings: Any) -> Any:
    """The dashboard's side of Redis; the publisher gets its own layer, as a worker process does."""
    from channels_redis.core import RedisChannelLayer

    config = {
        "hosts": [redis_url_or_fail(REDIS_DB)],
        "prefix": f"reindexer-test-{uuid.uuid4().hex}",
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}
    }
    return RedisChannelLayer(**config)


def test_publish__inside_the_window__is_sent_once_at_its_end(redis_layer: Any) -> None:
    async def listen(publish: Any) -> list[tuple[float, dict[str, Any]]]:
        channel = await redis_layer.new_channel()
        await redis_layer.group_add(JOBS_GROUP, channel)
        await asyncio.get_running_loop().run_in_executor(None, publish)
        received: list[tuple[float, dict[str, Any]]] = []
        try:
            while True:
                message = await asyncio.wait_for(redis_layer.receive(channel), timeout=1.0)
                received.append((time.monotonic(), message))
        except TimeoutError:
            pass
        await redis_layer.group_discard(JOBS_GROUP, channel)
        await redis_layer.flush()
        await redis_layer.close_pools()
        return received

    publisher = ProgressPublisher(min_interval=0.3)
    assert publisher.enabled
    sent_at: list[float] = []

    def publish() -> None:
        for _ in range(5):  # five batches in quick succession
            sent_at.append(time.monotonic())
            publisher.publish(7)

    try:
        received = asyncio.run(listen(publish))
    finally:
        publisher.close()
    assert [message["job_id"] for _, message in received] == [7, 7]
    first, last = received[0][0], received[1][0]
    assert last - first >= 0.25, "the trailing send came before the window closed"
    assert last >= sent_at[-1], "the trailing send must follow the last publish"
