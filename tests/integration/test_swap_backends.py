"""The core swap path on the server stores, once each: a first swap creates the alias (a view on
pgvector, a Milvus alias), a second moves it on, readers see each in turn, and a rollback
through the command line moves it back; then prune drops the collection rolled away from."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reindexer.models import AliasMove, JobStatus, ReindexJob
from reindexer.stores import store_backend
from tests.integration.test_swap_jobs import cli, reader_ids, swap_job
from tests.unit.test_store_aliases import configure

pytestmark = [pytest.mark.backends, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]


@pytest.mark.parametrize("spec", ["pgvector", "milvus"])
def test_swap_then_rollback__on_a_server_store(
    spec: str,
    make_job: MakeJob,
    data_dir: Path,
    settings: Any,
    request: pytest.FixtureRequest,
    run_burst_worker: Callable[..., None],
) -> None:
    configure(settings, spec, request)
    backend = store_backend(spec)
    alias = f"sb_{uuid.uuid4().hex[:10]}"
    first = swap_job(make_job, data_dir, "old", 80, store=spec, collection=alias)
    run_burst_worker()
    second = swap_job(make_job, data_dir, "new", 75, store=spec, collection=alias)
    run_burst_worker()
    for job in (first, second):
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED, job.error
        assert job.verification["passed"] is True
        assert job.verification["canary"] == {"sampled": 20, "found": 20, "misses": []}
    assert second.verification["previous"] == f"{alias}__{first.pk}"
    assert backend.alias_target(alias) == f"{alias}__{second.pk}"
    assert reader_ids(spec, alias) == (75, {"new"})
    assert [m.previous for m in AliasMove.objects.filter(alias=alias).order_by("at", "id")] == [
        "",
        f"{alias}__{first.pk}",
    ]

    out = cli("rollback", alias, "--store", spec)
    assert out == f"alias {alias} now serves {alias}__{first.pk} (was {alias}__{second.pk})\n"
    assert reader_ids(spec, alias) == (80, {"old"})
    assert cli("prune", alias, "--keep", "0", "--store", spec) == f"dropped {alias}__{second.pk}\n"
    assert backend.physical_collections(alias) == [f"{alias}__{first.pk}"]
