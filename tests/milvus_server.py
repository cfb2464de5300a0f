"""A real Milvus for the tests: `milvus-lite server --data-dir ...` on 127.0.0.1.

Interface (used by the store contract suite, the milvus job tests, the search tests and the
bench): to be built by the milvus work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


class MilvusServer:
    """A server in its own folder; `url` is what REINDEXER_MILVUS_URI takes."""

    url: str

    def __init__(self, folder: Path) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the server and start it again on the same folder and port (data kept)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    raise NotImplementedError
    yield
