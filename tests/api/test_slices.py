"""Sliced jobs through the JSON API: listed once with their slices, a slice under its own URL,
the failures of every slice, and `slices` on create with its bounds."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.api_schemas import SliceOut
from reindexer.models import ReindexJob
from tests.api.conftest import Api
from tests.dashboard.conftest import add_failure  # noqa: F401 - the fixture, shared
from tests.dashboard.slices import MakeJob, run_slice, sliced_job

pytestmark = pytest.mark.django_db


def test_list__gives_top_level_jobs_with_their_slices(as_viewer: Api, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[1], "worker-b", processed=1)
    plain = make_job()
    body = as_viewer.get("/api/jobs/").json()
    assert [row["id"] for row in body["results"]] == [plain.pk, job.pk]
    assert body["count"] == 2
    (sliced,) = [row for row in body["results"] if row["id"] == job.pk]
    assert sliced["slice_count"] == 4 and sliced["slice_of"] is None
    assert [s["slice_number"] for s in sliced["slices"]] == [1, 2, 3, 4]
    second = sliced["slices"][1]
    assert (second["id"], second["status"], second["worker"]) == (
        slices[1].pk,
        "running",
        "worker-b",
    )
    assert second["processed_docs"] == 1
    assert set(second) == set(SliceOut.model_fields)
    assert sliced["processed_docs"] == 1  # the sliced job's counters sum its slices'
    running = as_viewer.get("/api/jobs/", status="running").json()
    assert [row["id"] for row in running["results"]] == [job.pk]
    pending = as_viewer.get("/api/jobs/", status="pending").json()
    assert [row["id"] for row in pending["results"]] == [plain.pk]


def test_show__a_slice_names_its_job(as_viewer: Api, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    body = as_viewer.get(f"/api/jobs/{slices[2].pk}/").json()
    assert (body["slice_of"], body["slice_number"], body["slices"]) == (job.pk, 3, [])
    assert body["slice_count"] == 1


def test_show__before_the_split_a_sliced_job_has_no_slices_yet(
    as_viewer: Api, make_job: MakeJob
) -> None:
    job = make_job(slices=3)
    body = as_viewer.get(f"/api/jobs/{job.pk}/").json()
    assert (body["slice_count"], body["slices"]) == (3, [])


def test_list__query_count_does_not_grow_with_sliced_jobs(
    as_viewer: Api, make_job: MakeJob
) -> None:
    sliced_job(make_job, collection="first")
    as_viewer.get("/api/jobs/")
    with CaptureQueriesContext(connection) as few:
        as_viewer.get("/api/jobs/")
    for n in range(4):
        _, slices = sliced_job(make_job, collection=f"c{n}")
        run_slice(slices[0], f"w{n}")
    with CaptureQueriesContext(connection) as many:
        body = as_viewer.get("/api/jobs/").json()
    assert sum(len(row["slices"]) for row in body["results"]) == 20
    assert len(many) == len(few)


def test_failures__of_a_sliced_job_are_its_slices_with_their_slice(
    as_viewer: Api,
    make_job: MakeJob,
    add_failure: Any,  # noqa: F811 - the fixture imported above
) -> None:
    job, slices = sliced_job(make_job)
    add_failure(slices[0], doc_ids=["doc-0"])
    add_failure(slices[2], doc_ids=["doc-3"])
    body = as_viewer.get(f"/api/jobs/{job.pk}/failures/").json()
    assert body["count"] == 2
    found = {(f["job"], f["slice_number"], tuple(f["doc_ids"])) for f in body["results"]}
    assert found == {(slices[0].pk, 1, ("doc-0",)), (slices[2].pk, 3, ("doc-3",))}
    # A slice's own failures under its own URL.
    own = as_viewer.get(f"/api/jobs/{slices[2].pk}/failures/").json()
    assert [f["doc_ids"] for f in own["results"]] == [["doc-3"]]


def test_create__takes_slices(as_operator: Api, corpus: str) -> None:
    response = as_operator.post("/api/jobs/", {"source": corpus, "slices": 8})
    assert response.status_code == 201, response.json()
    assert response.json()["slice_count"] == 8
    assert ReindexJob.objects.get().slices == 8


@pytest.mark.parametrize("value", [0, 65, "x", None, 2.5])
def test_create__refuses_an_absurd_slice_count(as_operator: Api, corpus: str, value: Any) -> None:
    response = as_operator.post("/api/jobs/", {"source": corpus, "slices": value})
    assert response.status_code == 400
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["slices"]
    assert not ReindexJob.objects.exists()


def test_create__needs_the_operate_permission(as_viewer: Api, corpus: str) -> None:
    assert as_viewer.post("/api/jobs/", {"source": corpus, "slices": 2}).status_code == 403


def test_cancel__of_a_slice_cancels_its_job(as_operator: Api, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    response = as_operator.post(f"/api/jobs/{slices[0].pk}/cancel/")
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert set(ReindexJob.objects.filter(parent=job).values_list("status", flat=True)) == {
        "cancelled"
    }


def test_schema__documents_the_slices(as_viewer: Api) -> None:
    schema = as_viewer.get("/api/openapi.json").json()
    components = schema["components"]["schemas"]
    job = components["Job"]["properties"]
    assert job["slices"]["type"] == "array"
    assert job["slices"]["items"]["$ref"].endswith("/SliceOut")
    assert set(components["SliceOut"]["properties"]) == set(SliceOut.model_fields)
    assert "worker" in components["SliceOut"]["required"]
    spec_ref = schema["paths"]["/api/jobs/"]["post"]["requestBody"]["content"]["application/json"]
    spec = components[spec_ref["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert (spec["properties"]["slices"]["minimum"], spec["properties"]["slices"]["maximum"]) == (
        1,
        64,
    )
    assert spec["properties"]["slices"]["description"]
    failure = components["FailureOut"]["properties"]
    assert {"job", "slice_number"} <= set(failure)
