"""Errors shared by the adapters and the engine, and how the engine classifies them."""

from __future__ import annotations

import enum
import errno

import apsw


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


class RateLimited(TransientError):
    """The server asked to be left alone for `retry_after` seconds (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ReindexerError):
    """A failure that retrying the same input will not fix."""


class BackendFailed(ReindexerError):
    """An embedder or store refused the whole job: no document causes it and waiting won't fix it.

    `cause` is the operator's name for it (AUTH, DIMENSIONS, ...), as `store_fault` reports it.
    """

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class DimensionMismatch(BackendFailed):
    """An existing collection holds vectors of other dimensions than the job's embedder makes.

    Raised by a store's `open`, before anything is written, with both numbers.
    """

    def __init__(self, collection: str, *, existing: int, wanted: int) -> None:
        super().__init__(
            f"collection {collection!r} holds vectors of {existing} dimensions, but the embedder"
            f" makes {wanted}: use another collection, or the embedder it was built with",
            cause=DIMENSIONS,
        )
        self.existing = existing
        self.wanted = wanted


class ErrorKind(enum.Enum):
    """What an error says about where the fault lies, and so what the engine does with it."""

    TRANSIENT = "transient"
    """It may pass by waiting: retry with backoff (timeout, refused or reset, rate limit, lock)."""
    STORE = "store"
    """The store, disk or database as a whole is unusable and waiting won't fix it: fail the job."""
    DOCUMENT = "document"
    """Something a document can cause: isolate it by bisection."""


# Store-wide causes, as operators read them, by errno, by SQLSTATE and by narrow driver phrase.
DISK_FULL = "disk full"
READ_ONLY = "read only"
PERMISSION = "permission denied"
NO_TABLE = "no such table"
CORRUPT = "corrupt file"
AUTH = "authentication failed"
DIMENSIONS = "dimension mismatch"
UNKNOWN_MODEL = "unknown model"
BAD_RESPONSE = "bad response"
BAD_SETTING = "bad setting"

_FATAL_ERRNOS = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
}
_FATAL_APSW: dict[type[BaseException], str] = {
    apsw.FullError: DISK_FULL,
    apsw.ReadOnlyError: READ_ONLY,
    apsw.CantOpenError: PERMISSION,
    apsw.PermissionsError: PERMISSION,
    apsw.CorruptError: CORRUPT,
    apsw.NotADBError: CORRUPT,
    apsw.AuthError: AUTH,
}
# PostgreSQL SQLSTATEs (psycopg puts them on `sqlstate`).
_FATAL_SQLSTATES = {
    "53100": DISK_FULL,  # disk_full
    "25006": READ_ONLY,  # read_only_sql_transaction
    "42501": PERMISSION,  # insufficient_privilege
    "42P01": NO_TABLE,  # undefined_table
    "XX001": CORRUPT,  # data_corrupted
    "XX002": CORRUPT,  # index_corrupted
    "28000": AUTH,  # invalid_authorization_specification
    "28P01": AUTH,  # invalid_password
}
_FATAL_PHRASES = (
    ("database or disk is full", DISK_FULL),
    ("no space left on device", DISK_FULL),
    ("attempt to write a readonly database", READ_ONLY),
    ("read-only transaction", READ_ONLY),
    ("unable to open database file", PERMISSION),
    ("no such table", NO_TABLE),
    ("database disk image is malformed", CORRUPT),
    ("file is not a database", CORRUPT),
    ("password authentication failed", AUTH),
    # The collection was made for vectors of other dimensions (sqlite-vec; pgvector).
    ("dimension mismatch for inserted vector", DIMENSIONS),
    ("different vector dimensions", DIMENSIONS),
    (" dimensions, not ", DIMENSIONS),
)
# Redis and other drivers name these by class; the names are specific enough within a driver.
_FATAL_CLASS_NAMES = {"AuthenticationError": AUTH, "NoPermissionError": PERMISSION}

_TRANSIENT_ERRNOS = {
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EAGAIN,
}
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40001", "40P01", "57P01", "57P03", "53300")
_TRANSIENT_CLASS_NAMES = {
    "BusyError",
    "LockedError",
    "ConnectionError",
    "TimeoutError",
    "BusyLoadingError",
    "TryAgainError",
}
_TRANSIENT_PHRASES = (
    "database is locked",
    "database table is locked",
    "connection refused",
    "connection reset",
    "server closed the connection unexpectedly",
    # PostgreSQL refusing connections while it restarts (SQLSTATE 57P03, which libpq drops).
    "the database system is shutting down",
    "the database system is starting up",
    "timed out",
    "rate limit",
    "too many requests",
)
# Phrases are read only from these drivers' errors, so a ValueError about a timeout setting, or a
# KeyError('timeout'), says nothing about the store.
_DRIVER_MODULES = {
    "apsw",
    "sqlite3",
    "django",
    "psycopg",
    "psycopg2",
    "redis",
    "pymilvus",
    "grpc",
    "httpx",
    "openai",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it wraps: Django re-raises driver errors `from` the original."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__
    return seen


def _from_driver_class(cls: type) -> bool:
    return cls.__module__.split(".")[0] in _DRIVER_MODULES


def _from_driver(exc: BaseException) -> bool:
    return any(_from_driver_class(cls) for cls in type(exc).__mro__)


def _sqlstate(exc: BaseException) -> str:
    value = getattr(exc, "sqlstate", None)
    return value if isinstance(value, str) else ""


def _driver_class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__ if _from_driver_class(cls)}


def store_fault(exc: BaseException) -> str | None:
    """The store-wide cause `exc` reports ("disk full", "read only", ...), or None."""
    for err in _chain(exc):
        if isinstance(err, BackendFailed):
            return err.cause
        for cls, cause in _FATAL_APSW.items():
            if isinstance(err, cls):
                return cause
        if isinstance(err, OSError) and err.errno in _FATAL_ERRNOS:
            return _FATAL_ERRNOS[err.errno]
        if _sqlstate(err) in _FATAL_SQLSTATES:
            return _FATAL_SQLSTATES[_sqlstate(err)]
        for name in _driver_class_names(err):
            if name in _FATAL_CLASS_NAMES:
                return _FATAL_CLASS_NAMES[name]
        if _from_driver(err):
            text = str(err).lower()
            for phrase, cause in _FATAL_PHRASES:
                if phrase in text:
                    return cause
    return None


def _looks_transient(err: BaseException) -> bool:
    if isinstance(err, TimeoutError | ConnectionError):
        return True
    if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
        return True
    if _sqlstate(err).startswith(_TRANSIENT_SQLSTATE_PREFIXES):
        return True
    if _driver_class_names(err) & _TRANSIENT_CLASS_NAMES:
        return True
    text = str(err).lower()
    return _from_driver(err) and any(phrase in text for phrase in _TRANSIENT_PHRASES)


def classify(exc: BaseException) -> ErrorKind:
    """Whether `exc` may pass by waiting, condemns the whole store, or is a document's fault."""
    if isinstance(exc, TransientError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, PermanentError):
        return ErrorKind.DOCUMENT
    if store_fault(exc) is not None:
        return ErrorKind.STORE
    if any(_looks_transient(err) for err in _chain(exc)):
        return ErrorKind.TRANSIENT
    return ErrorKind.DOCUMENT


def retry_after(exc: BaseException) -> float:
    """The seconds the failing server asked to wait before a retry; 0 when it asked nothing."""
    for err in _chain(exc):
        if isinstance(err, RateLimited) and err.retry_after is not None:
            return err.retry_after
    return 0.0


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call may succeed."""
    return classify(exc) is ErrorKind.TRANSIENT


def is_store_fatal(exc: BaseException) -> bool:
    """Whether `exc` condemns the store (or database) as a whole, so no document is to blame."""
    return classify(exc) is ErrorKind.STORE


def describe_fault(exc: BaseException) -> str:
    """`exc` for an operator: its cause first, e.g. "disk full (FullError: database or ...)"."""
    cause = store_fault(exc)
    detail = f"{type(exc).__name__}: {exc}"
    return f"{cause} ({detail})" if cause else detail
