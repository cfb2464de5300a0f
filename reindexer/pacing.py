"""The live throttle: keeping a job's rate at or below its `max_docs_per_second`.

The pacer schedules "the next allowed time": a batch of n documents that began at `began` costs
n / limit seconds from then, and the next batch may begin once that time has come. A job slower
than its limit never waits. A small credit (CATCH_UP_SECONDS) lets the schedule absorb a
timer's lateness and a batch's jitter without drifting below the limit, and bounds any catch-up
burst to that many seconds' worth of documents.

`wait()` sleeps on an event (the worker's bell, which a NOTIFY or a stop rings) in steps of at
most `poll_seconds`, asking `check()` after each step what has changed: a new limit reprices
the wait, no limit ends it, and a reason to stop (a cancel, a SIGTERM) ends it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# How far behind schedule a batch may begin and still be charged from the schedule, not from
# when it began: the timer's lateness and the batches' jitter, not a backlog to burst through.
CATCH_UP_SECONDS = 0.05


@dataclass(frozen=True)
class Check:
    """What a pacing wait learns when it wakes: the limit now, and whether to stop waiting."""

    limit: float | None
    stop: bool = False


class Pacer:
    """The next allowed time of one job's batches, on `clock` (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # The last batch's charge: when it was scheduled from, and its documents.
        self._base: float | None = None
        self._docs = 0
        self._limit: float | None = None
        self.paced_seconds = 0.0  # slept in waits so far, for the job's span

    def charge(self, docs: int, limit: float | None, began: float) -> None:
        """A batch of `docs` documents that began at `began` was committed under `limit`."""
        if not limit or limit <= 0:
            self._base, self._limit = None, None
            return
        base = began
        allowed = self.allowed_at()
        if allowed is not None and allowed >= began - CATCH_UP_SECONDS:
            base = max(allowed, began - CATCH_UP_SECONDS)
        self._base, self._docs, self._limit = base, docs, limit

    def reprice(self, limit: float | None) -> None:
        """The limit changed while waiting: the last batch costs what the new one says."""
        if not limit or limit <= 0:
            self._base, self._limit = None, None
        elif self._base is not None:
            self._limit = limit

    def allowed_at(self) -> float | None:
        """When the next batch may begin; None without a limit."""
        if self._base is None or not self._limit:
            return None
        return self._base + self._docs / self._limit

    def left(self) -> float:
        """Seconds until the next batch may begin (0 if it may now)."""
        allowed = self.allowed_at()
        return 0.0 if allowed is None else max(0.0, allowed - self._clock())

    def wait(self, event: threading.Event, poll_seconds: float, check: Callable[[], Check]) -> bool:
        """Wait until the next batch may begin; False if `check()` said to stop first.

        `event` ends a step early; without a ring, `check()` runs every `poll_seconds`. A
        `check()` that clears a bell must do so before it reads the news, so that a ring that
        comes after is not lost.
        """
        while (left := self.left()) > 0:
            started = self._clock()
            event.wait(min(left, poll_seconds))
            self.paced_seconds += max(0.0, self._clock() - started)
            news = check()
            if news.stop:
                return False
            self.reprice(news.limit)
        return True
