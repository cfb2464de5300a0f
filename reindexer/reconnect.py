"""Riding out a blink of the job database: backoff, one-line logs, and waiting for it to answer."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, connection

# What a restart, a failover or a cut connection of the job database raises through Django.
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with jitter: `first`, doubling, up to `cap` seconds."""

    first: float = 0.1
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1 for the first)."""
        base = min(self.cap, self.first * self.factor ** max(0, attempt - 1))
        # Jitter keeps the workers of one machine from knocking on a restarted server in step.
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311
        return min(self.cap, base * spread)


def one_line(exc: BaseException) -> str:
    """The cause of `exc` on one line: drivers (psycopg) spread their messages over several."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"


def log_failed_attempt(
    log: logging.Logger, what: str, attempt: int, delay: float, exc: BaseException
) -> None:
    """One warning line per failed attempt; the traceback comes along only at DEBUG level."""
    log.warning(
        "%s (attempt %d, retrying in %.2g s): %s",
        what,
        attempt,
        delay,
        one_line(exc),
        exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
    )


def wait_for_database(
    probe: Callable[[], object],
    *,
    failed: BaseException,
    deadline: float,
    what: str,
    log: logging.Logger,
    backoff: Backoff | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """After the database error `failed`, call `probe` until it runs without one; False once
    `deadline` (a `time.monotonic()` value) has passed first. Other errors of `probe` propagate.
    """
    backoff = backoff or Backoff()
    error: BaseException = failed
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("%s (attempt %d, giving up): %s", what, attempt, one_line(error))
            return False
        delay = min(backoff.delay(attempt), left)
        log_failed_attempt(log, what, attempt, delay, error)
        sleep(delay)
        # Drop the broken connection so that the probe opens a fresh one.
        connection.close()
        try:
            probe()
        except DATABASE_DOWN as exc:
            error = exc
        else:
            return True
