"""Shared fixtures: an isolated data dir per test, corpora, jobs, users, a worker subprocess env."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

# Before pymilvus loads grpc: the tests fork servers (pgserver's pg_ctl, initdb) from a process
# that may hold grpc's threads, and grpc's fork handlers crashed such a child once (SIGSEGV in
# pg_ctl, "Epoll1Poller encountered epoll_wait error"). Nothing here forks to run grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest  # noqa: E402
from django.contrib.auth.models import Permission, User
from django.db import connection, transaction
from django.utils import timezone

from reindexer.jobs import cancel_job, create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import RedisServer, own_redis
from tests.milvus_server import milvus_server  # noqa: F401 - a session fixture, shared
from tests.pgvector_server import pgvector_server  # noqa: F401 - a session fixture, shared

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CORPUS = "docs.jsonl"
DEFAULT_CORPUS_SIZE = 5
FIXTURE_WORKER = "worker-test"


def pytest_configure(config: pytest.Config) -> None:
    """In-process ASGI tests import reindexer.asgi: its alerts thread would take the deliveries
    that tests send with dispatchers of their own. The tests that want it start daphne with it."""
    from django.conf import settings

    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, web_alerts=False)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, settings: Any) -> Path:
    """Every test gets its own data dir (stores, corpora), which is also the only source root."""
    path = tmp_path / "data"
    path.mkdir()
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER,
        data_dir=path,
        source_roots=(path,),
        lease_seconds=30.0,
        heartbeat_seconds=5.0,
        retry_backoff_seconds=0.001,
    )
    return path


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, on its own port: for tests that restart or fill it."""
    log_dir = tmp_path / "redis"
    log_dir.mkdir()
    with own_redis(log_dir) as server:
        yield server


def _doc(i: int) -> dict[str, Any]:
    words = ["vector", "store", "embedding", "batch", "index", "search", "query", "document"]
    text = " ".join(words[(i * 7 + k) % len(words)] for k in range(12))
    return {"id": f"doc-{i}", "text": f"document {i}: {text}", "metadata": {"n": i}}


@pytest.fixture
def make_corpus(data_dir: Path) -> Callable[..., Path]:
    """Write a JSONL corpus of `n` documents (plus any `extra_lines`) into the data dir."""

    def make(n: int, name: str = "docs.jsonl", extra_lines: list[str] | None = None) -> Path:
        path = data_dir / name
        with path.open("w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps(_doc(i)) + "\n")
            for line in extra_lines or []:
                f.write(line + "\n")
        return path

    return make


@pytest.fixture
def make_job(
    db: None, data_dir: Path, make_corpus: Callable[..., Path]
) -> Callable[..., ReindexJob]:
    """Queue a job through `create_job`, then take it to `status` as a worker would.

    `source` is a spec, or a path in the data dir (read as `jsonl:`). Without one, the job reads
    `jsonl:docs.jsonl`, written as a five-document corpus unless the test already wrote it.
    `spec_fields` are the other JobSpec fields. A job past pending was claimed by FIXTURE_WORKER
    `heartbeat_age` seconds ago and holds the counters `total`, `processed` and `failed`; then
    it went through the same guarded transitions the worker uses (complete, fail, cancel).
    `cancelling=True` leaves a running job with a cancel request the worker has not confirmed.
    One writer per collection: a job past pending without a `collection` of the test's takes
    the default one if no running job holds it, else a collection of its own.
    """

    def make(
        source: str | Path | None = None,
        *,
        status: str = JobStatus.PENDING,
        total: int | None = DEFAULT_CORPUS_SIZE,
        processed: int = 0,
        failed: int = 0,
        heartbeat_age: float = 1.0,
        cancelling: bool = False,
        **spec_fields: Any,
    ) -> ReindexJob:
        if status not in JobStatus.values:
            raise ValueError(f"make_job: unknown status {status!r}")
        if cancelling and status != JobStatus.RUNNING:
            raise ValueError("make_job: only a running job can be cancelling")
        if status == JobStatus.PENDING and (processed or failed):
            raise ValueError("make_job: a pending job has not processed anything yet")
        if source is None:
            if not (data_dir / DEFAULT_CORPUS).exists():
                make_corpus(DEFAULT_CORPUS_SIZE, name=DEFAULT_CORPUS)
            source = f"jsonl:{DEFAULT_CORPUS}"
        elif isinstance(source, Path):
            source = f"jsonl:{source.relative_to(data_dir)}"
        spec = JobSpec.parse({"source": source, **spec_fields})
        if status == JobStatus.PENDING:
            return create_job(spec)
        # Created and claimed in one transaction: a real worker running beside the test (the
        # browser stacks) never sees the job pending, so it cannot claim it first.
        with transaction.atomic():
            job = create_job(spec)
            if "collection" not in spec_fields:
                _own_collection_if_held(job)
            token = job.claim(FIXTURE_WORKER, lease_seconds=30)
        # The claim's heartbeat is the database's now; the fixture ages it.
        ReindexJob.objects.filter(pk=job.pk).update(
            total_docs=total,
            processed_docs=processed,
            failed_docs=failed,
            heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
        )
        job.refresh_from_db()
        if cancelling or status == JobStatus.CANCELLED:
            cancel_job(job)
        if status == JobStatus.COMPLETED:
            job.complete(token, FIXTURE_WORKER)
        elif status == JobStatus.FAILED:
            job.fail(token, FIXTURE_WORKER, "too many failures")
        elif status == JobStatus.CANCELLED:
            job.confirm_cancel(token, FIXTURE_WORKER)
        job.refresh_from_db()
        return job

    return make


def _own_collection_if_held(job: ReindexJob) -> None:
    """Give `job` a collection of its own if a running job writes its (default) one."""
    held = ReindexJob.objects.running().filter(store=job.store, collection=job.collection)
    if held.exists():
        job.collection = f"{job.collection}-{job.pk}"
        ReindexJob.objects.filter(pk=job.pk).update(collection=job.collection)


def _user(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def viewer(db: None) -> User:
    """May see jobs, not operate them."""
    return _user("viewer", "view_reindexjob")


@pytest.fixture
def operator(db: None) -> User:
    """May see, create, cancel and retry jobs."""
    return _user("operator", "view_reindexjob", "operate_reindexjob")


@pytest.fixture
def worker_env(data_dir: Path) -> Iterator[dict[str, str]]:
    """Environment for a subprocess (worker, command, daphne) sharing this test's database.

    Use with `@pytest.mark.django_db(transaction=True)` so the subprocess sees committed rows.
    """
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if db["ENGINE"] == "django.db.backends.sqlite3":
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        env["DATABASE_URL"] = f"postgres://{user}@{host}:{port}/{db['NAME']}"
    env.update(
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=str(data_dir),
        REINDEXER_RETRY_BACKOFF_SECONDS="0.001",
        # A test that wants the web process's alerts says so: others keep their deliveries.
        REINDEXER_WEB_ALERTS="off",
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        PYTHONUNBUFFERED="1",
    )
    yield env


@pytest.fixture
def manage() -> list[str]:
    """argv prefix that runs manage.py with this interpreter."""
    return [sys.executable, str(REPO_ROOT / "manage.py")]
