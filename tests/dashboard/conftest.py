"""Jobs in every state, made through the same guarded transitions the worker uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from reindexer.jobs import JobSpec, cancel_job, create_job
from reindexer.models import BatchFailure, ReindexJob

WORKER = "worker-test"


@pytest.fixture
def corpus(make_corpus: Callable[..., Path]) -> Path:
    return make_corpus(5)


@pytest.fixture
def make_job(corpus: Path, db: None) -> Callable[..., ReindexJob]:
    """A job in `status`; `cancelling=True` leaves a running job with a pending cancel."""

    def make(
        status: str = "pending",
        *,
        name: str = "docs",
        total: int | None = 5,
        processed: int = 0,
        failed: int = 0,
        heartbeat_age: float = 1.0,
        cancelling: bool = False,
    ) -> ReindexJob:
        job = create_job(JobSpec(source=f"jsonl:{corpus.name}", name=name))
        if status == "pending":
            return job
        now = timezone.now() - timedelta(seconds=heartbeat_age)
        token = job.claim(WORKER, now=now, lease_seconds=30)
        ReindexJob.objects.filter(pk=job.pk).update(
            total_docs=total, processed_docs=processed, failed_docs=failed
        )
        job.refresh_from_db()
        if cancelling or status == "cancelled":
            cancel_job(job)
        if status == "completed":
            job.complete(token, WORKER)
        elif status == "failed":
            job.fail(token, WORKER, "too many failures")
        elif status == "cancelled":
            job.confirm_cancel(token, WORKER)
        job.refresh_from_db()
        return job

    return make


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
