"""What pymilvus raises, in the terms of `reindexer.errors`.

Measured against milvus-lite 3.2 with pymilvus 3.0: a server that is down or restarting raises
`MilvusException(code=2, "Fail connecting to server ... server unavailable")`, and a server that
hangs raises grpc's `_InactiveRpcError` (DEADLINE_EXCEEDED). The shared classifier reads neither
as transient, so they become TransientError here. A dropped collection would otherwise be blamed
on each document in turn, so it fails the job instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from reindexer.errors import NO_TABLE, BackendFailed, TransientError

SETTING = "REINDEXER_MILVUS_URI"

# pymilvus Status / ErrorCode values (pymilvus.client.types, pymilvus.exceptions).
CONNECT_FAILED = 2
RATE_LIMIT = 8
COLLECTION_NOT_FOUND = 100
COLLECTION_NOT_LOADED = 101
# grpc status names (grpc.StatusCode.*.name) that a restart, overload or hang produces.
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"}
_TRANSIENT_CLASSES = {"MilvusUnavailableException", "ConnectError", "ConnectionNotExistException"}
_TRANSIENT_PHRASES = ("server unavailable", "fail connecting", "deadline exceeded", "rate limit")
_NOT_LOADED_PHRASES = ("not loaded", "call load()", "in state 'released'")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps; pymilvus re-raises `e from e`, so each error is seen once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _code(exc: BaseException) -> Any:
    return getattr(exc, "code", None)


def _grpc_status(exc: BaseException) -> str | None:
    """The grpc status name of a grpc.RpcError (whose `code` is a method), else None."""
    code = _code(exc)
    if not callable(code) or type(exc).__module__.split(".")[0] != "grpc":
        return None
    status = code()
    name = getattr(status, "name", None)
    return name if isinstance(name, str) else None


def _message(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details) and _grpc_status(exc) is not None:
        return f"{_grpc_status(exc)}: {details()}"
    message = getattr(exc, "message", None)
    return str(message) if isinstance(message, str) and message else str(exc)


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the server is down, restarting, overloaded or not answering."""
    for err in _chain(exc):
        if _grpc_status(err) in _TRANSIENT_GRPC:
            return True
        if type(err).__name__ in _TRANSIENT_CLASSES or _code(err) in (CONNECT_FAILED, RATE_LIMIT):
            return True
        if type(err).__module__.startswith("pymilvus"):
            if getattr(err, "retriable", False) is True:
                return True
            if any(phrase in _message(err).lower() for phrase in _TRANSIENT_PHRASES):
                return True
    return False


def is_not_loaded(exc: BaseException) -> bool:
    """Whether `exc` says the collection is released (as it is after a server restart)."""
    if _code(exc) == COLLECTION_NOT_LOADED:
        return True
    return type(exc).__module__.startswith("pymilvus") and any(
        phrase in _message(exc).lower() for phrase in _NOT_LOADED_PHRASES
    )


def _is_missing_collection(exc: BaseException) -> bool:
    return _code(exc) == COLLECTION_NOT_FOUND or "collection not found" in _message(exc).lower()


@contextlib.contextmanager
def translated(collection: str) -> Iterator[None]:
    """Re-raise pymilvus's errors as TransientError or BackendFailed where they are that."""
    try:
        yield
    except (TransientError, BackendFailed):
        raise
    except Exception as exc:
        if is_unreachable(exc):
            raise TransientError(
                f"Milvus server at {SETTING} unreachable: {_message(exc)}"
            ) from exc
        if type(exc).__module__.startswith("pymilvus") and _is_missing_collection(exc):
            raise BackendFailed(
                f"collection {collection!r} vanished from the Milvus server: {_message(exc)}",
                cause=NO_TABLE,
            ) from exc
        raise
