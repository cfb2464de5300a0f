"""Errors shared by the adapters and the engine, and how the engine classifies them."""

from __future__ import annotations

import errno


class ReindexerError(Exception):
    """Base of the errors that carry a message meant for an operator."""


class SpecError(ReindexerError):
    """A job's source, embedder, store or settings are invalid; raised before anything runs.

    `field` names the spec field it concerns, when one does, so a form shows it beside its input.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownBackend(SpecError):
    """A spec names a backend that is not registered."""


class SourcePathError(SpecError):
    """A source path is missing, or lies outside the allowed roots."""


class SourceUnavailable(ReindexerError):
    """The source vanished or became unreadable while the job ran: fatal for the job."""


class TransientError(ReindexerError):
    """A failure worth retrying: timeout, rate limit, a connection that blinked."""


class PermanentError(ReindexerError):
    """A failure that retrying the same input will not fix."""


_TRANSIENT_ERRNOS = {errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EAGAIN}
_TRANSIENT_PHRASES = ("database is locked", "timeout", "timed out", "rate limit", "temporarily")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call may succeed."""
    if isinstance(exc, TransientError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    # Driver errors (apsw.BusyError, psycopg OperationalError, ...) say so in their text.
    text = str(exc).lower()
    return type(exc).__name__ in {"BusyError", "LockedError"} or any(
        phrase in text for phrase in _TRANSIENT_PHRASES
    )
