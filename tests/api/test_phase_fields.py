"""`phase` and `dimensions` in the JSON API, in `reindex status --json`, and in the OpenAPI schema:
null before the job starts, then the engine's current phase and the embedder's dimensions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

from reindexer.models import JobStatus, Phase, ReindexJob
from reindexer.phases import PhaseTracker
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db


def status_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    call_command("reindex", "status", *args, "--json")
    return json.loads(capsys.readouterr().out)


def test_pending_job__phase_and_dimensions_are_null(
    as_viewer: Api, make_job: Callable[..., ReindexJob], capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job()
    body = as_viewer.get(f"/api/jobs/{job.pk}/").json()
    assert body["phase"] is None and body["dimensions"] is None
    row = status_json(capsys, str(job.pk))
    assert row["phase"] is None and row["dimensions"] is None


def test_completed_job__shows_its_last_phase_and_the_embedders_dimensions(
    as_viewer: Api,
    corpus: str,
    run_worker: Callable[[], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    created = queue(corpus)
    run_worker()
    job = ReindexJob.objects.get(pk=created)
    assert job.status == JobStatus.COMPLETED
    body = as_viewer.get(f"/api/jobs/{job.pk}/").json()
    # sqlite-vec builds no index: writing is the last phase.
    assert body["phase"] == "writing"
    assert body["dimensions"] == 384
    items = as_viewer.get("/api/jobs/").json()["results"]
    assert [(i["phase"], i["dimensions"]) for i in items if i["id"] == job.pk] == [("writing", 384)]
    row = status_json(capsys, str(job.pk))
    assert (row["phase"], row["dimensions"]) == ("writing", 384)
    rows = status_json(capsys)
    assert [(r["phase"], r["dimensions"]) for r in rows if r["id"] == job.pk] == [("writing", 384)]


def queue(source: str) -> int:
    call_command("reindex", "start", "--source", source, "--name", "phase-fields")
    return ReindexJob.objects.get(name="phase-fields").pk


def test_indexing_job__reports_indexing(
    as_viewer: Api, make_job: Callable[..., ReindexJob], capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=5, processed=5)
    assert job.lease_token is not None
    phases = PhaseTracker(job, job.lease_token, "worker-test")
    phases.enter(Phase.WRITING, total=5)
    phases.enter(Phase.INDEXING, total=100, detail="building index")
    assert as_viewer.get(f"/api/jobs/{job.pk}/").json()["phase"] == "indexing"
    assert status_json(capsys, str(job.pk))["phase"] == "indexing"


def test_openapi__documents_phase_and_dimensions(as_viewer: Api) -> None:
    schema = as_viewer.get("/api/openapi.json").json()
    job = schema["components"]["schemas"]["Job"]
    assert {"phase", "dimensions"} <= set(job["required"])
    phase = job["properties"]["phase"]
    choices = [option for option in phase["anyOf"] if option.get("type") != "null"]
    assert choices[0]["enum"] == list(Phase.values)
    assert {"type": "null"} in phase["anyOf"]
    dimensions = job["properties"]["dimensions"]
    assert {option.get("type") for option in dimensions["anyOf"]} == {"integer", "null"}
