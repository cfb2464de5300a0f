"""Fixtures for the JSON API tests: clients by user and by token, jobs in each state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from dashboard.models import ApiToken
from reindexer.models import JobStatus, ReindexJob


class Api:
    """A test client that speaks JSON to /api/ as one caller (a session, a token, or nobody)."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self.headers)

    def post(self, path: str, body: Any = None, *, raw: str | bytes | None = None) -> Any:
        data = raw if raw is not None else json.dumps({} if body is None else body)
        return self.client.post(path, data, content_type="application/json", headers=self.headers)


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def anonymous() -> Api:
    return Api(Client())


@pytest.fixture
def as_viewer(viewer: User) -> Api:
    client = Client()
    client.force_login(viewer)
    return Api(client)


@pytest.fixture
def as_operator(operator: User) -> Api:
    client = Client()
    client.force_login(operator)
    return Api(client)


@pytest.fixture
def operator_token(operator: User) -> str:
    return ApiToken.issue(operator, "tests")[1]


@pytest.fixture
def by_token(operator_token: str) -> Api:
    """The operator, authenticated by bearer token only, with CSRF checks enforced."""
    return Api(Client(enforce_csrf_checks=True), bearer(operator_token))


@pytest.fixture
def corpus(make_corpus: Callable[..., Path]) -> str:
    """The source spec of a five-document corpus in the data dir."""
    make_corpus(5)
    return "jsonl:docs.jsonl"


@pytest.fixture
def run_worker(transactional_db: None) -> Callable[[], None]:
    """Run `reindex_worker --burst` in this process.

    The worker manages its own connections and transactions, so the test must not run inside
    one: requesting this fixture makes the test transactional.
    """

    def run() -> None:
        call_command("reindex_worker", "--burst", "--worker-id", "api-tests")

    return run


def force_status(job: ReindexJob, status: JobStatus) -> ReindexJob:
    """Put a job in `status` directly (a test shortcut, not a transition)."""
    finished = status in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ReindexJob.objects.filter(pk=job.pk).update(
        status=status, finished_at=timezone.now() if finished else None
    )
    job.refresh_from_db()
    return job
