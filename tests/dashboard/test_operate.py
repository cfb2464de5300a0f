"""Cancel and Retry failed: through cancel_job / retry_failed, 409 on an invalid transition."""

from __future__ import annotations

import pytest
from django.test import Client

from reindexer.models import EventKind, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def test_cancel__pending_job_is_cancelled(operator_client: Client, make_job) -> None:
    job = make_job()
    response = operator_client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert list(job.events.values_list("kind", "actor"))[-1] == (EventKind.CANCELLED, "operator")


def test_cancel__returns_to_the_page_it_came_from(operator_client: Client, make_job) -> None:
    job = make_job()
    response = operator_client.post(f"/jobs/{job.pk}/cancel/", {"next": "/?status=pending"})
    assert response["Location"] == "/?status=pending"


def test_cancel__never_redirects_off_site(operator_client: Client, make_job) -> None:
    job = make_job()
    response = operator_client.post(f"/jobs/{job.pk}/cancel/", {"next": "https://evil.example/"})
    assert response["Location"] == f"/jobs/{job.pk}/"


def test_cancel__twice_is_409_with_a_readable_message(operator_client: Client, make_job) -> None:
    job = make_job()
    operator_client.post(f"/jobs/{job.pk}/cancel/")
    response = operator_client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert f"job {job.pk} cannot be cancelled: it is cancelled" in response.content.decode()


def test_cancel__htmx_from_the_list_returns_the_row_out_of_band(
    operator_client: Client, make_job
) -> None:
    job = make_job(status="running")
    headers = {**HTMX, "HX-Current-URL": "http://testserver/"}
    response = operator_client.post(f"/jobs/{job.pk}/cancel/", headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<tr id="job-row-{job.pk}"' in html
    assert f'id="job-progress-{job.pk}"' not in html  # the list has no progress block
    assert html.count('hx-swap-oob="true"') == 2  # row, message
    assert ">cancelling<" in html
    assert "stops after the current batch" in html
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.cancel_requested_at is not None


def test_cancel__htmx_from_the_detail_page_returns_its_panels_out_of_band(
    operator_client: Client, make_job
) -> None:
    job = make_job(status="running")
    headers = {**HTMX, "HX-Current-URL": f"http://testserver/jobs/{job.pk}/"}
    response = operator_client.post(f"/jobs/{job.pk}/cancel/", headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<section id="job-progress-{job.pk}"' in html
    assert f'id="job-timeline-{job.pk}"' in html
    assert f"job-row-{job.pk}" not in html  # the detail page has no row
    assert ">cancelling<" in html
    assert "stops after the current batch" in html


def test_cancel__htmx_conflict_is_a_409_fragment(operator_client: Client, make_job) -> None:
    job = make_job(status="running", cancelling=True)
    response = operator_client.post(f"/jobs/{job.pk}/cancel/", headers=HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "<html" not in html
    assert 'role="alert"' in html
    assert f"job {job.pk} is already cancelling" in html
    assert f'<tr id="job-row-{job.pk}"' in html  # the row shows the state as it is


def test_cancel__finished_job_is_409(operator_client: Client, make_job) -> None:
    job = make_job(status="completed")
    assert operator_client.post(f"/jobs/{job.pk}/cancel/").status_code == 409
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED


def test_retry__with_nothing_to_retry_is_409(operator_client: Client, make_job) -> None:
    job = make_job(status="completed")
    response = operator_client.post(f"/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 409
    assert "no unresolved failures to retry" in response.content.decode()
    assert ReindexJob.objects.count() == 1


def test_retry__while_running_is_409(operator_client: Client, make_job) -> None:
    job = make_job(status="running")
    response = operator_client.post(f"/jobs/{job.pk}/retry-failed/", headers=HTMX)
    assert response.status_code == 409
    assert "once it has finished" in response.content.decode()


def test_retry__queues_a_job_for_the_failed_documents(
    operator_client: Client, make_job, add_failure
) -> None:
    job = make_job(status="completed", processed=5, failed=2)
    add_failure(job)
    response = operator_client.post(f"/jobs/{job.pk}/retry-failed/")
    retry = ReindexJob.objects.get(retry_of=job)
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{retry.pk}/"
    assert retry.status == JobStatus.PENDING
    assert job.events.filter(kind=EventKind.RETRY_FAILED_QUEUED, actor="operator").exists()
    again = operator_client.post(f"/jobs/{job.pk}/retry-failed/", headers=HTMX)
    assert again.status_code == 409
    assert "already queued" in again.content.decode()


def test_retry__htmx_links_to_the_new_job(operator_client: Client, make_job, add_failure) -> None:
    job = make_job(status="completed", processed=5, failed=2)
    add_failure(job)
    response = operator_client.post(f"/jobs/{job.pk}/retry-failed/", headers=HTMX)
    retry = ReindexJob.objects.get(retry_of=job)
    assert response.status_code == 200
    assert f'href="/jobs/{retry.pk}/"' in response.content.decode()
