"""Real errors of the `openai:` embedder and of a store of other dimensions, for classify's table.

Each maker raises the error for real: against the test embedding server on 127.0.0.1, a closed
port, or a sqlite-vec file made for vectors of other dimensions.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reindexer.embedders.openai import OpenAIEmbedder
from reindexer.errors import BackendFailed, RateLimited, TransientError
from tests.embedding_server import embedding_server

MODEL = "hash-384"


def raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError(f"{action} raised nothing")


def served_error(**server: Any) -> BaseException:
    """What embedding one text raises against a server started with `server`'s options."""
    with embedding_server(**server) as running:
        embedder = OpenAIEmbedder(MODEL, running.base_url, "sk-test-secret")
        try:
            return raised(lambda: embedder.embed(["one text"]))
        finally:
            embedder.close()


def openai_rate_limited(tmp_path: Path) -> BaseException:
    exc = served_error(schedule=(429,), retry_after="1")
    assert type(exc) is RateLimited, exc
    return exc


def openai_overloaded(tmp_path: Path) -> BaseException:
    exc = served_error(schedule=(503,))
    assert type(exc) is TransientError, exc
    return exc


def openai_unreachable(tmp_path: Path) -> BaseException:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = OpenAIEmbedder(MODEL, f"http://127.0.0.1:{port}/v1", timeout=2)
    exc = raised(lambda: embedder.embed(["one text"]))
    assert type(exc) is TransientError, exc
    return exc


def openai_wrong_key(tmp_path: Path) -> BaseException:
    exc = served_error(api_key="the-right-key")
    assert type(exc) is BackendFailed, exc
    return exc


def openai_unknown_model(tmp_path: Path) -> BaseException:
    exc = served_error(model="another-model")
    assert type(exc) is BackendFailed, exc
    return exc
