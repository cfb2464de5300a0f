"""Resume from the dashboard: a failed job's button, the POST through resume_job, 409 otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from reindexer.models import EventKind, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
MakeJob = Callable[..., ReindexJob]


def resume_button(job: ReindexJob) -> str:
    return f'hx-post="/jobs/{job.pk}/resume/"'


def test_detail__failed_job_shows_the_resume_button_to_an_operator(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3)
    html = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert resume_button(job) in html
    assert ">Resume</button>" in html


@pytest.mark.parametrize("status", ["pending", "running", "completed", "cancelled"])
def test_detail__only_a_failed_job_has_a_resume_button(
    operator_client: Client, make_job: MakeJob, status: str
) -> None:
    job = make_job(status=status)
    html = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert resume_button(job) not in html


def test_detail__a_viewer_sees_no_resume_button(viewer_client: Client, make_job: MakeJob) -> None:
    job = make_job(status="failed", processed=3)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert resume_button(job) not in html
    assert f'data-job-id="{job.pk}"' in html


def test_resume__a_viewer_is_refused_with_403_and_the_job_stays_failed(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3)
    response = viewer_client.post(f"/jobs/{job.pk}/resume/")
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_resume__anonymous_is_sent_to_log_in(client: Client, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    response = client.post(f"/jobs/{job.pk}/resume/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_resume__a_get_is_405(operator_client: Client, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    assert operator_client.get(f"/jobs/{job.pk}/resume/").status_code == 405


def test_resume__needs_the_csrf_token(operator: object, make_job: MakeJob) -> None:
    job = make_job(status="failed")
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)  # type: ignore[arg-type]
    assert client.post(f"/jobs/{job.pk}/resume/").status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_resume__failed_job_is_queued_again_with_its_counters(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3, failed=1)
    checkpoint_before = job.checkpoint
    response = operator_client.post(f"/jobs/{job.pk}/resume/")
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert (job.processed_docs, job.failed_docs, job.checkpoint) == (3, 1, checkpoint_before)
    assert job.error == "" and job.finished_at is None
    last = job.events.order_by("at", "id").last()
    assert last is not None
    assert (last.kind, last.actor) == (EventKind.RESUMED, "operator")
    assert "resuming from 3 processed; it had failed: too many failures" in last.detail


def test_resume__htmx_from_the_detail_page_answers_with_its_panels_and_a_message(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3)
    headers = {**HTMX, "HX-Current-URL": f"http://testserver/jobs/{job.pk}/"}
    response = operator_client.post(f"/jobs/{job.pk}/resume/", headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<section id="job-progress-{job.pk}"' in html
    assert f'id="job-timeline-{job.pk}"' in html
    assert 'data-status="pending"' in html
    assert resume_button(job) not in html  # pending now: no second resume
    assert f"Job #{job.pk} queued to resume from its checkpoint, after 3 processed" in html


def test_resume__twice_is_409_with_a_clear_message(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="failed", processed=3)
    assert operator_client.post(f"/jobs/{job.pk}/resume/").status_code == 302
    response = operator_client.post(f"/jobs/{job.pk}/resume/", headers=HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert f"job {job.pk} cannot be resumed: it is pending; only a failed job can be" in html
    assert job.events.filter(kind=EventKind.RESUMED).count() == 1


@pytest.mark.parametrize("status", ["running", "completed", "cancelled"])
def test_resume__of_a_job_that_did_not_fail_is_409_and_changes_nothing(
    operator_client: Client, make_job: MakeJob, status: str
) -> None:
    job = make_job(status=status, processed=2)
    response = operator_client.post(f"/jobs/{job.pk}/resume/")
    assert response.status_code == 409
    assert f"it is {status}; only a failed job can be" in response.content.decode()
    job.refresh_from_db()
    assert job.status == status


def test_resume__of_an_unknown_job_is_404(operator_client: Client) -> None:
    assert operator_client.post("/jobs/999999/resume/").status_code == 404
