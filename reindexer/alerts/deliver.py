"""One HTTP attempt of a delivery, and the retry policy between attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import requests

USER_AGENT = "reindexer-alerts/1"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    # The wait after the first failed attempt, doubled after each one, up to `max_delay`.
    base_delay: float = 2.0
    max_delay: float = 300.0
    # Connecting and each read; a server that answers slowly is cut by it.
    timeout: float = 5.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after `attempts` failed ones: exponential, with
        jitter (up to a quarter less) so that hooks failing together do not retry together."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempts - 1))
        return ceiling * (1 - random.uniform(0, 0.25))  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class Attempt:
    response_code: int | None
    error: str

    @property
    def delivered(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300

    @property
    def outcome(self) -> str:
        """How the timeline says it: the code, or what went wrong (never the URL)."""
        if self.response_code is not None:
            return str(self.response_code)
        return self.error


def _why(exc: requests.RequestException, timeout: float) -> str:
    """The failure in words without the URL: requests' own messages repeat it whole, and a
    webhook's URL may hold its token."""
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def attempt(url: str, body: dict[str, Any], timeout: float) -> Attempt:
    """POST `body` as JSON to `url`; the response's code, or why there was none. Never raises
    for the network: every failure is the delivery's, to be recorded."""
    try:
        response = requests.post(
            url,
            json=body,
            timeout=(timeout, timeout),
            allow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            # The body is not read: a receiver that streams one forever cannot hold us.
            stream=True,
        )
    except requests.RequestException as exc:
        return Attempt(response_code=None, error=_why(exc, timeout))
    response.close()
    return Attempt(response_code=response.status_code, error="")
