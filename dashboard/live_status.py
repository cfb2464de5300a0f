"""Whether a socket's live updates flow: the channel layer (Redis) may go away and come back.

The socket stays open meanwhile (the database still serves its initial state and ticks), and the
page shows the state through the `#live-status` element, swapped out of band.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a channel layer raises while its server is down or restarting (channels-redis raises
# redis-py's errors unwrapped; BusyLoadingError, while Redis loads, is a ConnectionError).
LAYER_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

# Retry delays after a failure: short first, so a restart costs about its own length.
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0


def next_delay(delay: float) -> float:
    return min(delay * 2, RETRY_MAX_SECONDS)


def render_live_status(*, paused: bool, oob: bool = True) -> str:
    return render_to_string("dashboard/_live_status.html", {"paused": paused, "oob": oob})
