"""Helpers shared by the job tests against server stores (pgvector, Milvus) and the retry counts."""

from __future__ import annotations

import json
import uuid
from typing import Any

from reindexer.models import ReindexJob
from tests.integration.conftest import Processes


def collection() -> str:
    """A fresh collection name every store takes."""
    return f"jobs_{uuid.uuid4().hex[:12]}"


def row(job: ReindexJob) -> ReindexJob:
    """The job as stored now."""
    return ReindexJob.objects.get(pk=job.pk)


def verify(processes: Processes, job: ReindexJob, env: dict[str, str]) -> dict[str, Any]:
    """`reindex verify JOB --json` in a subprocess with the store's settings in `env`."""
    processes.env = {**processes.env, **env}
    done = processes.run("reindex", "verify", str(job.pk), "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report
