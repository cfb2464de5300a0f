"""Stalled jobs and failures that cannot be retried, on the pages and in the admin.

Force cancel is offered beside Cancel once a job's lease expired; a cancel on such a job says
its worker is not responding; its ETA is unknown; "Retry failed" is offered only when a retry
would find something; malformed records say "fix in the source".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from reindexer.documents import MALFORMED_ERROR
from reindexer.models import BatchFailure, EventKind, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
STALE = 90.0  # seconds; the tests' lease is 30
FORCE_BUTTON = ">Force cancel</button>"
MakeJob = Callable[..., ReindexJob]


def row_of(html: str, job: ReindexJob) -> str:
    found = re.search(rf'<tr id="job-row-{job.pk}".*?</tr>', html, re.S)
    assert found, html
    return found.group(0)


def progress_of(html: str, job: ReindexJob) -> str:
    found = re.search(rf'<section id="job-progress-{job.pk}".*?</section>', html, re.S)
    assert found, html
    return found.group(0)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", row, re.S)]


# -- Force cancel -----------------------------------------------------------------------------


def test_force_cancel__offered_beside_cancel_on_a_stalled_job_in_the_row_and_the_detail(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    row = row_of(operator_client.get("/").content.decode(), job)
    block = progress_of(operator_client.get(f"/jobs/{job.pk}/").content.decode(), job)
    for html in (row, block):
        assert ">Cancel</button>" in html and FORCE_BUTTON in html
        assert f'hx-post="/jobs/{job.pk}/force-cancel/"' in html
        assert f'hx-confirm="Force cancel job #{job.pk}' in html


def test_force_cancel__not_offered_while_the_worker_renews_its_lease(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running")
    assert FORCE_BUTTON not in operator_client.get("/").content.decode()
    assert FORCE_BUTTON not in operator_client.get(f"/jobs/{job.pk}/").content.decode()


def test_force_cancel__still_offered_once_a_cancel_was_requested_of_a_gone_worker(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE, cancelling=True)
    block = progress_of(operator_client.get(f"/jobs/{job.pk}/").content.decode(), job)
    assert ">Cancel</button>" not in block and FORCE_BUTTON in block


def test_force_cancel__not_offered_to_a_viewer_and_refused_with_403(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    assert FORCE_BUTTON not in viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert viewer_client.post(f"/jobs/{job.pk}/force-cancel/").status_code == 403
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_force_cancel__htmx_post_cancels_the_orphaned_job_and_says_so(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    response = operator_client.post(f"/jobs/{job.pk}/force-cancel/", headers=HTMX)
    assert response.status_code == 200
    assert f"Job #{job.pk} force-cancelled" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.lease_token) == (JobStatus.CANCELLED, None)
    assert job.events.filter(kind=EventKind.CANCELLED, actor="operator").exists()


def test_force_cancel__plain_post_redirects_back_to_the_page_it_came_from(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    response = operator_client.post(f"/jobs/{job.pk}/force-cancel/", {"next": "/?status=running"})
    assert (response.status_code, response["Location"]) == (302, "/?status=running")
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_force_cancel__live_lease_is_409_and_the_job_keeps_running(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running")
    response = operator_client.post(f"/jobs/{job.pk}/force-cancel/", headers=HTMX)
    assert response.status_code == 409
    assert "cannot be force-cancelled" in response.content.decode()
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_cancel__of_a_stalled_job_says_its_worker_is_not_responding(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    html = operator_client.post(f"/jobs/{job.pk}/cancel/", headers=HTMX).content.decode()
    assert "worker-test is not responding" in html and "Force cancel" in html
    assert "stops after the current batch" not in html


def test_admin_force_cancel_action__cancels_stalled_jobs_and_reports_the_others(
    admin_client: Client, make_job: MakeJob
) -> None:
    stalled, live = make_job(status="running", heartbeat_age=STALE), make_job(status="running")
    data = {"action": "force_cancel_jobs", "_selected_action": [stalled.pk, live.pk]}
    text = admin_client.post("/admin/reindexer/reindexjob/", data, follow=True).content.decode()
    assert ReindexJob.objects.get(pk=stalled.pk).status == JobStatus.CANCELLED
    assert ReindexJob.objects.get(pk=live.pk).status == JobStatus.RUNNING
    assert "Force-cancelled 1 job(s)." in text
    assert f"#{live.pk}: job {live.pk} cannot be force-cancelled" in text


# -- ETA while stalled ------------------------------------------------------------------------


def test_eta__unknown_in_the_row_and_the_detail_while_stalled(
    operator_client: Client, make_job: MakeJob
) -> None:
    stalled = make_job(status="running", total=100, processed=10, heartbeat_age=STALE)
    live = make_job(status="running", total=100, processed=10, heartbeat_age=1)
    page = operator_client.get("/").content.decode()
    eta_column = 7  # select, name, status, progress, processed, failed, rate, ETA
    assert cells(row_of(page, stalled))[eta_column] == "—"
    assert cells(row_of(page, live))[eta_column] != "—"
    block = progress_of(operator_client.get(f"/jobs/{stalled.pk}/").content.decode(), stalled)
    assert "<dt>ETA</dt><dd>—</dd>" in block


# -- Retry failed and malformed records -------------------------------------------------------


@pytest.fixture
def malformed_only(
    make_corpus: Callable[..., Path], make_job: MakeJob, transactional_db: None
) -> ReindexJob:
    """A job the worker completed whose only failures are two malformed records."""
    corpus = make_corpus(4, extra_lines=["not json", '{"id": "", "text": "no id"}'])
    job = make_job(corpus, batch_size=10, max_failed_ratio=1.0)
    call_command("reindex_worker", "--burst", "--worker-id", "dash-tests")
    job.refresh_from_db()
    assert (job.status, job.failed_docs) == (JobStatus.COMPLETED, 2)
    assert set(job.failures.values_list("error_type", flat=True)) == {MALFORMED_ERROR}
    return job


def test_retry_failed__not_offered_when_only_malformed_records_failed(
    operator_client: Client, malformed_only: ReindexJob
) -> None:
    html = operator_client.get(f"/jobs/{malformed_only.pk}/").content.decode()
    assert ">Retry failed</button>" not in html


def test_retry_failed__offered_once_a_retryable_failure_joins_the_malformed_ones(
    operator_client: Client, malformed_only: ReindexJob, add_failure: Callable[..., BatchFailure]
) -> None:
    add_failure(malformed_only, doc_ids=["doc-1"])
    html = operator_client.get(f"/jobs/{malformed_only.pk}/").content.decode()
    assert ">Retry failed</button>" in html


def test_retry_failed__not_offered_once_every_retryable_failure_is_resolved(
    operator_client: Client, make_job: MakeJob, add_failure: Callable[..., BatchFailure]
) -> None:
    job = make_job(status="completed", processed=5, failed=2)
    failure = add_failure(job)
    assert ">Retry failed</button>" in operator_client.get(f"/jobs/{job.pk}/").content.decode()
    BatchFailure.objects.filter(pk=failure.pk).update(resolved_at=job.finished_at)
    assert ">Retry failed</button>" not in operator_client.get(f"/jobs/{job.pk}/").content.decode()


def test_failures__malformed_records_say_fix_in_the_source_in_the_list_and_the_detail(
    viewer_client: Client, malformed_only: ReindexJob, add_failure: Callable[..., BatchFailure]
) -> None:
    retryable = add_failure(malformed_only, doc_ids=["doc-1"])
    malformed = malformed_only.failures.filter(error_type=MALFORMED_ERROR).first()
    assert malformed is not None
    html = viewer_client.get(f"/jobs/{malformed_only.pk}/").content.decode()
    kinds = {
        pk: cells(body)[5]
        for pk, body in re.findall(
            r'<tbody class="failure[^"]*" id="failure-(\d+)">(.*?)</tbody>', html, re.S
        )
    }
    assert kinds[str(malformed.pk)] == "fix in the source"
    assert kinds[str(retryable.pk)] == "permanent"

    def resolved(failure: BatchFailure) -> str:
        url = f"/jobs/{malformed_only.pk}/failures/{failure.pk}/"
        detail = viewer_client.get(url, headers=HTMX).content.decode()
        found = re.search(r"<dt>Resolved</dt><dd>(.*?)</dd>", detail, re.S)
        assert found, detail
        return found.group(1)

    assert resolved(malformed).startswith("fix in the source")
    assert resolved(retryable) == "no"
