"""A real PostgreSQL 16 with pgvector for the tests (PyPI's pgserver), on 127.0.0.1.

Interface (used by the store contract suite, the pgvector job tests, the search tests and the
bench): to be built by the pgvector work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


class PgvectorServer:
    """A server in its own folder; `url` is what REINDEXER_PGVECTOR_URL takes."""

    url: str

    def __init__(self, folder: Path) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the server and start it again on the same folder and port (data kept)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgvectorServer]:
    raise NotImplementedError
    yield
