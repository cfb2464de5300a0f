"""Fixtures for the dashboard tests: clients by user, a corpus, and batch failures.

Jobs in every state come from the shared `make_job` factory in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from reindexer.models import BatchFailure, ReindexJob


@pytest.fixture
def corpus(make_corpus: Callable[..., Path]) -> Path:
    return make_corpus(5)


@pytest.fixture
def add_failure() -> Callable[..., BatchFailure]:
    def add(job: ReindexJob, **fields: Any) -> BatchFailure:
        values: dict[str, Any] = {
            "batch_number": 1,
            "doc_ids": ["doc-1", "doc-2"],
            "error_type": "PermanentError",
            "message": "poisoned document",
            "traceback": "Traceback (most recent call last):\n  ...\nPermanentError: poisoned",
            "attempts": 3,
        }
        values.update(fields)
        return BatchFailure.objects.create(job=job, **values)

    return add


@pytest.fixture
def viewer_client(client: Client, viewer: User) -> Client:
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


# The consumer tests' fixtures (the real ASGI application, logged-in sockets, Redis), shared
# with the tests of sliced jobs' live pages.
from tests.live.conftest import (  # noqa: E402, F401
    application,
    open_socket,
    redis_layer,
    viewer_cookie,
)
