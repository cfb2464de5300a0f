"""POST cancel and retry-failed, GET failures: transitions, conflicts, permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from reindexer.models import BatchFailure, EventKind, JobEvent, JobStatus, ReindexJob
from tests.api.conftest import Api, force_status
from tests.api.test_jobs import error_of, field_errors

pytestmark = pytest.mark.django_db

FAILURE_FIELDS = {
    "id", "batch_number", "doc_ids", "error_type", "message", "traceback", "attempts",
    "transient", "created_at", "resolved_at", "job", "slice_number",
}  # fmt: skip


@pytest.fixture
def poisoned_job(make_job: Callable[..., ReindexJob], run_worker: Callable[[], None]) -> ReindexJob:
    """A job that completed with one failed document (doc-2 is poisoned in the store)."""
    job = make_job(store="flaky(sqlite-vec,poison=doc-2)", batch_size=2, max_failed_ratio=1.0)
    run_worker()
    job.refresh_from_db()
    assert (job.status, job.failed_docs) == (JobStatus.COMPLETED, 1)
    return job


def running(job: ReindexJob) -> ReindexJob:
    job.claim("elsewhere", lease_seconds=30)
    return job


# -- cancel -----------------------------------------------------------------------------------


def test_cancel__pending_job_is_cancelled_at_once(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"]) == (job.pk, "cancelled")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    events = JobEvent.objects.filter(job=job).exclude(kind=EventKind.CREATED)
    assert {(e.kind, e.actor) for e in events} == {
        (EventKind.CANCEL_REQUESTED, "operator"),
        (EventKind.CANCELLED, "operator"),
    }


def test_cancel__running_job_gets_a_cancel_request(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = running(make_job())
    body = as_operator.post(f"/api/jobs/{job.pk}/cancel/").json()
    assert (body["status"], body["cancel_requested"]) == ("running", True)


def test_cancel__twice_is_409(as_operator: Api, make_job: Callable[..., ReindexJob]) -> None:
    job = make_job()
    assert as_operator.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert "cannot be cancelled: it is cancelled" in error_of(response)


def test_cancel__running_job_twice_is_409_already_cancelling(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = running(make_job())
    assert as_operator.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert "already cancelling" in error_of(response)


def test_cancel__completed_job_is_409_and_unchanged(
    as_operator: Api, make_job: Callable[..., ReindexJob], run_worker: Callable[[], None]
) -> None:
    job = make_job()
    run_worker()
    before = ReindexJob.objects.filter(pk=job.pk).values().get()
    assert before["status"] == JobStatus.COMPLETED

    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    assert "cannot be cancelled: it is completed" in error_of(response)
    assert ReindexJob.objects.filter(pk=job.pk).values().get() == before


def test_cancel__viewer_is_403_and_job_unchanged(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    response = as_viewer.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_cancel__unknown_job_is_404(as_operator: Api) -> None:
    response = as_operator.post("/api/jobs/424242/cancel/")
    assert response.status_code == 404
    assert error_of(response) == "no job with id 424242"


def test_cancel__anonymous_is_401(anonymous: Api, make_job: Callable[..., ReindexJob]) -> None:
    job = make_job()
    assert anonymous.post(f"/api/jobs/{job.pk}/cancel/").status_code == 401
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_cancel__an_invalid_force_flag_names_the_parameter(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/?force=maybe")
    assert response.status_code == 400
    [(field, message)] = field_errors(response)
    assert field == "force" and message.startswith("force: ")
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


# -- retry-failed -----------------------------------------------------------------------------


def test_retry_failed__queues_a_job_over_the_failed_documents(
    as_operator: Api, poisoned_job: ReindexJob, operator: Any
) -> None:
    response = as_operator.post(f"/api/jobs/{poisoned_job.pk}/retry-failed/")

    assert response.status_code == 201
    body = response.json()
    retry = ReindexJob.objects.get(retry_of=poisoned_job)
    assert response["Location"] == f"/api/jobs/{retry.pk}/"
    assert (body["id"], body["status"], body["retry_of"]) == (retry.pk, "pending", poisoned_job.pk)
    assert retry.created_by == operator
    assert JobEvent.objects.filter(
        job=poisoned_job, kind=EventKind.RETRY_FAILED_QUEUED, actor="operator"
    ).exists()


def test_retry_failed__twice_is_409(as_operator: Api, poisoned_job: ReindexJob) -> None:
    assert as_operator.post(f"/api/jobs/{poisoned_job.pk}/retry-failed/").status_code == 201
    response = as_operator.post(f"/api/jobs/{poisoned_job.pk}/retry-failed/")
    assert response.status_code == 409
    assert "already queued" in error_of(response)
    assert ReindexJob.objects.filter(retry_of=poisoned_job).count() == 1


def test_retry_failed__unfinished_job_is_409(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    response = as_operator.post(f"/api/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 409
    assert "once it has finished" in error_of(response)


def test_retry_failed__job_without_failures_is_409(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = force_status(make_job(), JobStatus.COMPLETED)
    response = as_operator.post(f"/api/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 409
    assert "no unresolved failures" in error_of(response)
    assert ReindexJob.objects.count() == 1


def test_retry_failed__viewer_is_403(as_viewer: Api, poisoned_job: ReindexJob) -> None:
    assert as_viewer.post(f"/api/jobs/{poisoned_job.pk}/retry-failed/").status_code == 403
    assert not ReindexJob.objects.filter(retry_of=poisoned_job).exists()


def test_retry_failed__unknown_job_is_404(as_operator: Api) -> None:
    assert as_operator.post("/api/jobs/424242/retry-failed/").status_code == 404


# -- failures ---------------------------------------------------------------------------------


def test_failures__lists_what_the_worker_recorded(as_viewer: Api, poisoned_job: ReindexJob) -> None:
    response = as_viewer.get(f"/api/jobs/{poisoned_job.pk}/failures/")

    assert response.status_code == 200
    body = response.json()
    assert body["job"] == poisoned_job.pk
    assert (body["count"], body["page"], body["pages"]) == (1, 1, 1)
    (failure,) = body["results"]
    assert set(failure) == FAILURE_FIELDS
    stored = BatchFailure.objects.get(job=poisoned_job)
    assert failure["id"] == stored.pk
    assert (failure["job"], failure["slice_number"]) == (poisoned_job.pk, None)
    assert failure["doc_ids"] == ["doc-2"]
    assert failure["error_type"] == "PermanentError"
    assert "poisoned document 'doc-2'" in failure["message"]
    assert "PermanentError" in failure["traceback"]
    assert failure["transient"] is False and failure["attempts"] >= 1
    assert failure["created_at"] == stored.created_at.isoformat()
    assert failure["resolved_at"] is None


def test_failures__markup_in_messages_is_returned_as_plain_json_data(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    script = '<script>alert("x")</script> & <b>'
    BatchFailure.objects.create(
        job=job, batch_number=1, doc_ids=[script], error_type="PermanentError",
        message=script, traceback=script,
    )  # fmt: skip

    response = as_viewer.get(f"/api/jobs/{job.pk}/failures/")

    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    (failure,) = response.json()["results"]
    assert failure["message"] == failure["traceback"] == script
    assert failure["doc_ids"] == [script]


def test_failures__paginates_in_batch_order(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    resolved = timezone.now()
    for n in range(5, 0, -1):
        BatchFailure.objects.create(
            job=job, batch_number=n, doc_ids=[f"doc-{n}"], error_type="E", message=f"m{n}",
            resolved_at=resolved if n == 1 else None,
        )  # fmt: skip

    first = as_viewer.get(f"/api/jobs/{job.pk}/failures/", page_size="2").json()
    assert (first["count"], first["pages"]) == (5, 3)
    assert [f["batch_number"] for f in first["results"]] == [1, 2]
    assert first["results"][0]["resolved_at"] == resolved.isoformat()
    last = as_viewer.get(f"/api/jobs/{job.pk}/failures/", page_size="2", page="3").json()
    assert [f["batch_number"] for f in last["results"]] == [5]
    assert last["next"] is None and "page=2" in last["previous"]


def test_failures__unknown_job_is_404(as_viewer: Api) -> None:
    assert as_viewer.get("/api/jobs/424242/failures/").status_code == 404


def test_failures__anonymous_is_401(anonymous: Api, poisoned_job: ReindexJob) -> None:
    assert anonymous.get(f"/api/jobs/{poisoned_job.pk}/failures/").status_code == 401
