"""The harness fixtures of the contract suite, each parametrized over the stores it fits.

`harness` runs a test on every store, `server_harness` on the stores with a server to restart,
`transient_harness` on the flaky wrappers that inject transient faults. A server store starts
its session server only when one of its tests runs, and is marked `backends` (see pyproject).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stores.harnesses import EVERY, TRANSIENT, WITH_SERVER, Harness, Server, StoreKind

_KINDS = {"harness": EVERY, "server_harness": WITH_SERVER, "transient_harness": TRANSIENT}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kinds in _KINDS.items():
        if name in metafunc.fixturenames:
            params = [
                pytest.param(
                    kind, id=kind.spec, marks=[pytest.mark.backends] if kind.server else []
                )
                for kind in kinds
            ]
            metafunc.parametrize(name, params, indirect=True)


def _harness(request: pytest.FixtureRequest, settings: Any) -> Iterator[Harness]:
    kind: StoreKind = request.param
    server: Server | None = None
    if kind.server is not None:
        server = request.getfixturevalue(kind.server)
        setting = "pgvector_url" if kind.server == "pgvector_server" else "milvus_uri"
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, **{setting: server.url})
    harness = Harness(kind, server)
    try:
        yield harness
    finally:
        harness.close()


# `data_dir` first: it replaces settings.REINDEXER too, and the server's URL goes on top of it.
@pytest.fixture
def harness(request: pytest.FixtureRequest, data_dir: Path, settings: Any) -> Iterator[Harness]:
    yield from _harness(request, settings)


@pytest.fixture
def server_harness(
    request: pytest.FixtureRequest, data_dir: Path, settings: Any
) -> Iterator[Harness]:
    yield from _harness(request, settings)


@pytest.fixture
def transient_harness(
    request: pytest.FixtureRequest, data_dir: Path, settings: Any
) -> Iterator[Harness]:
    yield from _harness(request, settings)
