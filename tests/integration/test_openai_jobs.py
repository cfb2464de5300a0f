"""Real jobs through the `openai:` embedder: a real worker subprocess, real sqlite-vec, and a real
OpenAI-protocol server on 127.0.0.1 (tests/embedding_server.py) that misbehaves on a schedule."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from reindexer.embedders.hashing import HashingEmbedder
from reindexer.errors import SpecError
from reindexer.models import JobEvent, JobStatus, ReindexJob
from reindexer.specs import JobSpec
from reindexer.stores.sqlite_vec import SqliteVecStore
from tests.embedding_server import OK, EmbeddingServer, embedding_server
from tests.integration.conftest import Processes, finish

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODEL = "hash-384"
KEY = "sk-integration-secret-9f3a"
EMBEDDER = f"openai:{MODEL}"

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


def point_at(settings: Any, server: EmbeddingServer) -> dict[str, str]:
    """Configure `openai:` for this process (job creation) and return the worker's environment."""
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER, openai_base_url=server.base_url, openai_api_key=KEY
    )
    return {"REINDEXER_OPENAI_BASE_URL": server.base_url, "REINDEXER_OPENAI_API_KEY": KEY}


def run_worker(processes: Processes, env: dict[str, str]) -> None:
    code, _, err = finish(processes.worker("w-openai", env=env), timeout=120)
    assert code == 0, err
    assert KEY not in err, "the key must stay out of the worker's log"


def test_job__completes_while_a_third_of_the_requests_get_429_and_counts_the_waits_as_retries(
    settings: Any, make_corpus: Corpus, make_job: MakeJob, processes: Processes, data_dir: Path
) -> None:
    with embedding_server(schedule=(OK, OK, 429), retry_after="1", api_key=KEY) as server:
        env = point_at(settings, server)
        corpus = make_corpus(40)
        job = make_job(corpus, embedder=EMBEDDER, batch_size=5)
        run_worker(processes, env)

    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.processed_docs == 40 and job.failed_docs == 0
    limited = server.served.count(429)
    assert limited >= 3, server.served.statuses
    assert job.retries == limited
    assert "429" in job.last_error
    store = SqliteVecStore.for_collection(data_dir, job.collection, 384)
    try:
        assert store.count() == 40
        seventh = json.loads(corpus.read_text().splitlines()[7])
        # The stored vectors are the server's (hashing) ones: a document's own text finds it.
        [hit] = store.search(HashingEmbedder(384).embed([seventh["text"]])[0], k=1)
        assert hit.id == "doc-7"
    finally:
        store.close()
    assert set(server.served.authorizations) == {f"Bearer {KEY}"}


def test_job__its_key_is_never_shown_on_the_dashboard_the_api_or_the_events(
    settings: Any,
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
    client: Client,
    viewer: Any,
) -> None:
    with embedding_server(schedule=(OK, 429), retry_after="0", api_key=KEY) as server:
        env = point_at(settings, server)
        job = make_job(make_corpus(10), embedder=EMBEDDER, batch_size=5)
        run_worker(processes, env)
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    client.force_login(viewer)
    page = client.get(reverse("dashboard:job-detail", args=[job.pk]))
    api = client.get(reverse("api:job", kwargs={"job_id": job.pk}))
    assert page.status_code == 200 and api.status_code == 200
    assert EMBEDDER in page.content.decode() and api.json()["embedder"] == EMBEDDER
    assert KEY not in page.content.decode() and KEY not in api.content.decode()
    events = json.dumps(list(JobEvent.objects.filter(job=job).values_list("detail", flat=True)))
    assert KEY not in events and KEY not in json.dumps(
        ReindexJob.objects.filter(pk=job.pk).values().get(), default=str
    )


def test_job__fails_naming_the_dimension_mismatch_when_the_collection_has_other_dimensions(
    settings: Any, make_corpus: Corpus, make_job: MakeJob, processes: Processes, data_dir: Path
) -> None:
    with embedding_server(dimensions=128) as server:
        env = point_at(settings, server)
        job = make_job(make_corpus(10), embedder=EMBEDDER, batch_size=5)
        SqliteVecStore.for_collection(data_dir, job.collection, 384).close()
        run_worker(processes, env)
    job = row(job)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("store failed: dimension mismatch"), job.error
    assert "holds vectors of 384 dimensions, but the embedder makes 128" in job.error, job.error
    assert job.failed_docs == 0 and job.processed_docs == 0, "refused before any batch"
    store = SqliteVecStore.for_collection(data_dir, job.collection, 384)
    try:
        assert store.count() == 0, "nothing was written"
    finally:
        store.close()


def test_job__a_server_that_goes_away_is_retried_then_fails_the_job_through_the_breaker(
    settings: Any, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # The probe and two batches are answered; then every connection is refused.
    with embedding_server(go_away_after=3) as server:
        env = point_at(settings, server)
        job = make_job(make_corpus(40), embedder=EMBEDDER, batch_size=5)
        run_worker(processes, env)
    job = row(job)
    assert job.status == JobStatus.FAILED
    assert job.processed_docs == 10
    # The batch that trips the breaker is not committed, so its retries show in the error.
    assert re.search(r"store unreachable: \d+ transient failures in a row", job.error), job.error
    assert f"embedding server at {server.base_url}/embeddings unreachable" in job.error


def test_job_spec__an_openai_embedder_without_a_base_url_is_refused_at_creation(
    settings: Any, make_corpus: Corpus
) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, openai_base_url=None)
    make_corpus(5)
    with pytest.raises(SpecError, match="REINDEXER_OPENAI_BASE_URL"):
        JobSpec.parse({"source": "jsonl:docs.jsonl", "embedder": EMBEDDER})
    assert not ReindexJob.objects.exists()
