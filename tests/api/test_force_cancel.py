"""POST /api/jobs/<id>/cancel/?force=true: a running job whose lease expired, cancelled without
its worker; refused while the lease is live; the job's output names its state as the dashboard."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.api.conftest import Api
from tests.api.test_jobs import error_of

pytestmark = pytest.mark.django_db

STALE = 90.0  # seconds; the tests' lease is 30


def test_force_cancel__stalled_job_is_cancelled_with_an_event(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    assert job.is_stalled(30)
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/?force=true")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["label"], body["stalled"]) == ("cancelled", "cancelled", False)
    event = job.events.get(kind=EventKind.CANCELLED)
    assert event.actor == "operator"
    assert event.detail.startswith("force-cancelled: worker worker-test not responding since ")


def test_force_cancel__live_lease_is_409_and_job_unchanged(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="running")
    before = ReindexJob.objects.filter(pk=job.pk).values().get()
    response = as_operator.post(f"/api/jobs/{job.pk}/cancel/?force=true")
    assert response.status_code == 409
    assert "cannot be force-cancelled" in error_of(response)
    assert ReindexJob.objects.filter(pk=job.pk).values().get() == before


def test_force_cancel__viewer_is_403_and_job_unchanged(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    assert as_viewer.post(f"/api/jobs/{job.pk}/cancel/?force=true").status_code == 403
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_cancel__without_force_on_a_stalled_job_still_only_requests_the_cancel(
    as_operator: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    body = as_operator.post(f"/api/jobs/{job.pk}/cancel/").json()
    assert (body["status"], body["label"], body["cancel_requested"]) == (
        "running",
        "cancelling",
        True,
    )


def test_job__stalled_job_has_no_eta(as_operator: Api, make_job: Callable[..., ReindexJob]) -> None:
    job = make_job(status="running", total=100, processed=10, heartbeat_age=STALE)
    body = as_operator.get(f"/api/jobs/{job.pk}/").json()
    assert (body["stalled"], body["eta_seconds"]) == (True, None)
