"""At most one send per key in a window, with the last state always following at the window's end.

Shared by the worker's progress publisher and the dashboard's websocket consumers. Both run it on
an event loop, and neither sends a state itself: a send renders whatever is current when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

Send = Callable[[], Awaitable[None]]

# Past this many keys, those whose window has closed are forgotten (they behave as never sent).
DEFAULT_MEMORY = 1000


class TrailingThrottle(Generic[K]):
    """Per key: send at once outside the window, else once at its end with the latest `send`.

    A send inside the window is not lost but deferred: exactly one deferred send per key is due
    at a time, and it runs the `send` most recently submitted for that key. Use from one event
    loop only.
    """

    def __init__(self, min_interval: float, *, memory: int = DEFAULT_MEMORY) -> None:
        self.min_interval = min_interval
        self.memory = memory
        self._last: dict[K, float] = {}
        self._deferred: dict[K, asyncio.Task[None]] = {}
        self._sends: dict[K, Send] = {}

    async def submit(self, key: K, send: Send, *, force: bool = False) -> None:
        """Run `send` now if `key` is outside its window (or `force`), else defer it to the end."""
        if force:
            await self._send_now(key, send)
            return
        if key in self._deferred:
            self._sends[key] = send  # the deferred send, when due, runs the latest one
            return
        wait = self._last.get(key, -math.inf) + self.min_interval - self._now()
        if wait > 0:
            self._sends[key] = send
            self._deferred[key] = asyncio.get_running_loop().create_task(
                self._send_later(key, wait), name=f"throttle-deferred-{key}"
            )
            return
        await self._send_now(key, send)

    def note_sent(self, key: K) -> None:
        """Open `key`'s window now, as if just sent: its state went out some other way."""
        self._record(key)

    @property
    def pending(self) -> frozenset[K]:
        """The keys with a deferred send due."""
        return frozenset(self._deferred)

    def cancel(self, key: K) -> None:
        """Drop `key`'s deferred send, if one is due."""
        task = self._deferred.pop(key, None)
        self._sends.pop(key, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Drop every deferred send."""
        for key in list(self._deferred):
            self.cancel(key)

    async def drain(self) -> None:
        """Wait until no deferred send is due (each runs at its own time)."""
        while self._deferred:
            await asyncio.gather(*self._deferred.values(), return_exceptions=True)

    async def _send_now(self, key: K, send: Send) -> None:
        self._record(key)
        await send()

    async def _send_later(self, key: K, wait: float) -> None:
        await asyncio.sleep(wait)
        # Cleared before sending: a submit from now on starts a window of its own.
        del self._deferred[key]
        send = self._sends.pop(key)
        self._record(key)
        try:
            await send()
        except Exception:
            # Nobody awaits this task; the next submit for the key sends its state again.
            logger.warning("deferred send for %s failed", key, exc_info=True)

    def _record(self, key: K) -> None:
        now = self._now()
        if len(self._last) > self.memory:
            cutoff = now - self.min_interval
            self._last = {k: t for k, t in self._last.items() if t > cutoff}
        self._last[key] = now

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
