"""POST /api/jobs/<id>/resume/: a failed job is queued again with its counters; 409 otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.models import ApiToken
from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.api.conftest import Api, bearer
from tests.api.test_jobs import error_of

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]


def resume_url(job: ReindexJob) -> str:
    return f"/api/jobs/{job.pk}/resume/"


def test_resume__failed_job_is_pending_again_with_its_counters(
    as_operator: Api, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3, failed=1)
    response = as_operator.post(resume_url(job))
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["error"], body["finished_at"]) == (
        job.pk,
        "pending",
        "",
        None,
    )
    assert (body["processed_docs"], body["failed_docs"], body["total_docs"]) == (3, 1, 5)
    event = job.events.get(kind=EventKind.RESUMED)
    assert event.actor == "operator"
    assert event.detail == "resuming from 3 processed; it had failed: too many failures"


def test_resume__by_an_operator_token_without_a_session_or_csrf(
    by_token: Api, make_job: MakeJob
) -> None:
    job = make_job(status="failed")
    assert by_token.post(resume_url(job)).status_code == 200
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_resume__twice_is_409_with_the_reason(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    assert as_operator.post(resume_url(job)).status_code == 200
    response = as_operator.post(resume_url(job))
    assert response.status_code == 409
    assert error_of(response) == (
        f"job {job.pk} cannot be resumed: it is pending; only a failed job can be"
    )
    assert job.events.filter(kind=EventKind.RESUMED).count() == 1


@pytest.mark.parametrize("status", ["pending", "running", "completed", "cancelled"])
def test_resume__of_a_job_that_did_not_fail_is_409_and_unchanged(
    as_operator: Api, make_job: MakeJob, status: str
) -> None:
    job = make_job(status=status)
    before = ReindexJob.objects.filter(pk=job.pk).values().get()
    response = as_operator.post(resume_url(job))
    assert response.status_code == 409
    assert f"it is {status}; only a failed job can be" in error_of(response)
    assert ReindexJob.objects.filter(pk=job.pk).values().get() == before


def test_resume__a_viewer_session_is_403(as_viewer: Api, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    response = as_viewer.post(resume_url(job))
    assert response.status_code == 403
    assert "permission" in error_of(response)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_resume__a_token_without_the_operate_permission_is_403(
    viewer: User, make_job: MakeJob
) -> None:
    job = make_job(status="failed")
    api = Api(Client(enforce_csrf_checks=True), bearer(ApiToken.issue(viewer)[1]))
    response = api.post(resume_url(job))
    assert response.status_code == 403
    assert "permission" in error_of(response)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_resume__anonymous_is_401(anonymous: Api, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    assert anonymous.post(resume_url(job)).status_code == 401


def test_resume__unknown_job_is_404(as_operator: Api) -> None:
    response = as_operator.post("/api/jobs/424242/resume/")
    assert response.status_code == 404
    assert error_of(response) == "no job with id 424242"


def test_resume__a_get_is_405_with_allow(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    response = as_operator.get(resume_url(job))
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_resume__is_in_the_openapi_schema(as_viewer: Api) -> None:
    schema = as_viewer.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/jobs/{job_id}/resume/"]["post"]
    assert set(operation["responses"]) == {"200", "401", "403", "404", "409"}
    error = schema["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    assert "errors" in error["properties"]
