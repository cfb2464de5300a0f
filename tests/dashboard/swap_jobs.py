"""Real swap jobs for the tests of the swap pages, the API and the admin: a corpus in the data
dir, a job queued through create_job (mode swap), run by the real engine in this process
(`reindex_worker --burst`) into a real sqlite-vec store. No status is set by hand.

Tests that use the `swap_job` fixture (import `swap_job_fixture`) are transactional: the worker
manages its own transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from reindexer import conf
from reindexer.jobs import create_job
from reindexer.models import ReindexJob
from reindexer.specs import JobSpec
from reindexer.stores import store_backend
from reindexer.stores.sqlite_vec import SqliteVecStore
from reindexer.stores.sqlite_vec_aliases import remove_collection_file

ALIAS = "docs"
STORE = "sqlite-vec"
DOCS = 12

SwapJob = Callable[..., ReindexJob]


def run_swap(
    make_corpus: Callable[..., Path],
    *,
    alias: str = ALIAS,
    approve: str = "manual",
    docs: int = DOCS,
    store: str = STORE,
    **spec: Any,
) -> ReindexJob:
    """Queue a swap job over a corpus of `docs` documents and run it to where the engine stops
    it: awaiting approval (manual), or completed with the alias moved (auto)."""
    make_corpus(docs, name=f"{alias}.jsonl")
    fields = {
        "source": f"jsonl:{alias}.jsonl",
        "mode": "swap",
        "approve": approve,
        "collection": alias,
        "store": store,
        "batch_size": 5,
        "name": f"swap {alias}",
        **spec,
    }
    job = create_job(JobSpec.parse(fields))
    call_command("reindex_worker", "--burst", "--worker-id", "swap-tests")
    job.refresh_from_db()
    return job


@pytest.fixture(name="swap_job")
def swap_job_fixture(transactional_db: None, make_corpus: Callable[..., Path]) -> SwapJob:
    def make(**kwargs: Any) -> ReindexJob:
        return run_swap(make_corpus, **kwargs)

    return make


def serves(alias: str = ALIAS, store: str = STORE) -> str | None:
    """What `alias` serves now, as the store itself says."""
    return store_backend(store).alias_target(alias)


def collections(alias: str = ALIAS, store: str = STORE) -> list[str]:
    return store_backend(store).physical_collections(alias)


def built(job: ReindexJob) -> str:
    return f"{job.collection}__{job.pk}"


def lose_built_collection(job: ReindexJob) -> None:
    """The collection a job awaiting approval built vanishes from the store's disk (an operator's
    mistake, a full disk's cleanup): the store then refuses to move the alias to it."""
    path = SqliteVecStore.path_of(conf.get().data_dir, built(job))
    assert remove_collection_file(path), f"{path} was not there"
