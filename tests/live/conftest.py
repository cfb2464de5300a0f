"""Fixtures for the consumer tests: the real ASGI application, logged-in sockets, Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from dashboard import fanout, relay
from dashboard.fanout import TICK_TASK_PREFIX
from tests.live.redis_check import redis_url_or_fail

REDIS_DB = 13  # the consumer tests' own database on the local server
ORIGIN = b"http://localhost"

Connect = Callable[..., Awaitable[WebsocketCommunicator]]


def session_cookie(user: User) -> bytes:
    """A `Cookie` header value for a real session of `user` (read back by AuthMiddlewareStack)."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


@pytest.fixture
def viewer_cookie(viewer: User) -> bytes:
    return session_cookie(viewer)


@pytest.fixture
def stranger_cookie(db: None) -> bytes:
    """A logged-in user without the permission to view jobs."""
    return session_cookie(User.objects.create_user("stranger", password="pw-stranger"))


@pytest.fixture
def application() -> Any:
    from reindexer.asgi import application

    return application


@pytest_asyncio.fixture
async def open_socket(application: Any) -> AsyncIterator[Connect]:
    """Open sockets on the real application; all are closed, and the layer checked, afterwards."""
    opened: list[WebsocketCommunicator] = []

    async def open_one(
        path: str, *, cookie: bytes | None = None, origin: bytes | None = ORIGIN
    ) -> WebsocketCommunicator:
        headers = [(b"host", b"localhost")]
        if origin is not None:
            headers.append((b"origin", origin))
        if cookie is not None:
            headers.append((b"cookie", cookie))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        return communicator

    yield open_one
    for communicator in opened:
        await communicator.disconnect()
    ticking = [t for t in asyncio.all_tasks() if t.get_name().startswith(TICK_TASK_PREFIX)]
    assert not [t for t in ticking if not t.done()], "a socket's tick outlived it"
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        assert layer.groups == {}, f"sockets left groups behind: {layer.groups}"
        await layer.flush()
    assert not relay.relay.running, "the relay outlived the last socket"
    assert not fanout.hub.group_names, "the hub still follows groups after the last socket"


async def receive_all(communicator: WebsocketCommunicator, quiet: float = 0.5) -> list[str]:
    """Every text frame until none arrives for `quiet` seconds."""
    frames: list[str] = []
    while not await communicator.receive_nothing(timeout=quiet, interval=0.01):
        frames.append(await communicator.receive_from(timeout=1))
    return frames


@pytest_asyncio.fixture
async def redis_layer(settings: Any) -> AsyncIterator[dict[str, Any]]:
    """The channel layer on the local Redis (own db and prefix); request it before open_socket."""
    import uuid

    from channels_redis.core import RedisChannelLayer

    config = {
        "hosts": [redis_url_or_fail(REDIS_DB)],
        "prefix": f"reindexer-test-{uuid.uuid4().hex}",
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}
    }
    yield config
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    await layer.flush()
    await layer.close_pools()


TILES_FRAME = '<section id="summary-tiles"'


async def show(communicator: WebsocketCommunicator, *job_ids: int) -> None:
    """What live.js does on a list page: tell the socket which job rows the page shows."""
    await communicator.send_to(text_data=json.dumps({"shown": list(job_ids)}))
    await asyncio.sleep(0.05)  # handled before the pushes that follow


async def receive_rows(communicator: WebsocketCommunicator, timeout: float = 5) -> str:
    """The next list frame other than the summary tiles (pushed apart, on every change)."""
    while True:
        frame: str = await communicator.receive_from(timeout=timeout)
        if not frame.startswith(TILES_FRAME):
            return frame
