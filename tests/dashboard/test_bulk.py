"""Bulk cancel and bulk retry from the jobs list: the confirmation, then per-job outcomes; with and
without htmx; permissions, CSRF, bounds and escaping."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.bulk_plan import BULK_MAX
from reindexer.models import JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

URL = "/jobs/bulk/"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/?status=running"}


def post(client: Client, action: str, jobs: list[int], **extra: str) -> str:
    response = client.post(URL, {"action": action, "job": [str(pk) for pk in jobs], **extra})
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def status(job: ReindexJob) -> str:
    job.refresh_from_db()
    return str(job.status)


def test_bulk__confirmation_says_what_will_happen_to_each_job_and_changes_nothing(
    operator_client: Client, make_job
) -> None:
    running = [make_job(status="running") for _ in range(3)]
    pending, done = make_job(), make_job(status="completed")
    done_too = make_job(status="completed")
    ids = [job.pk for job in [*running, pending, done, done_too]]
    html = post(operator_client, "cancel", ids)
    assert "3 running jobs will be asked to stop." in html
    assert "1 pending job will be cancelled." in html
    assert "2 finished jobs cannot be cancelled." in html
    assert html.count('data-bulk-job="') == 6
    assert 'name="confirmed" value="on"' in html
    assert all(f'<input type="hidden" name="job" value="{pk}">' in html for pk in ids)
    assert ">Cancel these jobs</button>" in html
    assert status(pending) == JobStatus.PENDING
    assert all(ReindexJob.objects.get(pk=job.pk).cancel_requested_at is None for job in running)


def test_bulk__confirmed_cancel_acts_on_each_job_and_reports_each_outcome_without_javascript(
    operator_client: Client, make_job
) -> None:
    running, pending = make_job(status="running"), make_job()
    done, cancelling = make_job(status="completed"), make_job(status="running", cancelling=True)
    ids = [running.pk, done.pk, pending.pk, cancelling.pk]
    response = operator_client.post(
        URL, {"action": "cancel", "job": ids, "confirmed": "on", "next": "/?status=running"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/?status=running"
    running.refresh_from_db()
    assert running.is_cancelling
    assert status(pending) == JobStatus.CANCELLED
    assert status(done) == JobStatus.COMPLETED  # refused, and the others still went ahead
    html = operator_client.get(response["Location"]).content.decode()
    assert f"Job #{running.pk} (" in html and "its worker stops after the current batch." in html
    assert f"Job #{pending.pk} ({pending.name}): cancelled." in html
    assert re.search(rf"Job #{done.pk} \([^)]*\): refused: [^<]*completed", html)
    assert re.search(rf"Job #{cancelling.pk} \([^)]*\): refused: ", html)


def test_bulk__htmx_confirmation_renders_the_partial_for_the_page(
    operator_client: Client, make_job
) -> None:
    job = make_job()
    response = operator_client.post(URL, {"action": "cancel", "job": [job.pk]}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith("<section") and "<html" not in html
    assert 'hx-post="/jobs/bulk/"' in html and 'hx-target="#bulk-confirm"' in html


def test_bulk__htmx_confirmed_answers_with_the_outcomes_and_a_refresh_of_the_list(
    operator_client: Client, make_job
) -> None:
    pending, done = make_job(), make_job(status="completed")
    response = operator_client.post(
        URL, {"action": "cancel", "job": [pending.pk, done.pk], "confirmed": "on"}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert '<div id="flash" class="flash-area" aria-live="polite" hx-swap-oob="true">' in html
    assert "Bulk cancel: 1 of 2 done." in html
    assert f"Job #{pending.pk} ({pending.name}): cancelled." in html
    assert 'class="outcome-refused"' in html
    assert 'id="jobs-refresh" hx-swap-oob="true"' in html
    assert status(pending) == JobStatus.CANCELLED


def test_bulk__retry_queues_one_retry_per_finished_job_with_failures_and_refuses_the_rest(
    operator_client: Client, make_job, add_failure
) -> None:
    with_failures = make_job(status="completed", processed=5, failed=2)
    add_failure(with_failures)
    clean = make_job(status="completed", processed=5)
    running = make_job(status="running")
    ids = [with_failures.pk, clean.pk, running.pk]
    html = post(operator_client, "retry", ids)
    assert "1 finished job will have its failed documents queued as a new job." in html
    assert "1 job has no failed documents to retry." in html
    assert "1 unfinished job cannot be retried until it finishes." in html
    before = ReindexJob.objects.count()
    data = {"action": "retry", "job": ids, "confirmed": "on", "next": "/"}
    assert operator_client.post(URL, data).status_code == 302
    html = operator_client.get("/").content.decode()
    retry = ReindexJob.objects.get(retry_of=with_failures)
    assert ReindexJob.objects.count() == before + 1
    assert f"retry of the failed documents queued as job #{retry.pk}." in html
    assert re.search(rf"Job #{clean.pk} \([^)]*\): refused: [^<]*no unresolved failures", html)
    assert re.search(rf"Job #{running.pk} \([^)]*\): refused: [^<]*running", html)
    again = post(operator_client, "retry", [with_failures.pk])
    assert "1 job already has a retry queued." in again


def test_bulk__the_confirmation_offers_no_button_when_no_job_can_be_acted_on(
    operator_client: Client, make_job
) -> None:
    html = post(operator_client, "cancel", [make_job(status="completed").pk])
    assert "Cancel these jobs" not in html
    assert "None of the selected jobs can be acted on." in html


def test_bulk__jobs_gone_since_the_selection_are_reported(
    operator_client: Client, make_job
) -> None:
    job = make_job()
    html = post(operator_client, "cancel", [job.pk, 999_999])
    assert "1 selected job no longer exists." in html
    response = operator_client.post(
        URL, {"action": "cancel", "job": [999_999], "confirmed": "on"}, headers=HTMX
    )
    assert "Job #999999: refused: it no longer exists." in response.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "cancel"}, "Select at least one job."),
        ({"action": "cancel", "job": ["1", "x"]}, "The selection holds an invalid job id."),
        ({"action": "cancel", "job": ["-3"]}, "The selection holds an invalid job id."),
        ({"action": "cancel", "job": ["²"]}, "The selection holds an invalid job id."),
        ({"action": "cancel", "job": ["9" * 40]}, "The selection holds an invalid job id."),
        ({"action": "delete", "job": ["1"]}, "Select a valid choice"),
        (
            {"action": "cancel", "job": [str(n) for n in range(1, BULK_MAX + 2)]},
            f"{BULK_MAX + 1} jobs selected: a bulk action takes at most {BULK_MAX}.",
        ),
    ],
)
def test_bulk__an_invalid_selection_is_refused_with_a_clear_message(
    operator_client: Client, make_job, data: dict[str, object], message: str
) -> None:
    job = make_job()
    for headers in ({}, HTMX):
        response = operator_client.post(URL, {**data, "confirmed": "on"}, headers=headers)
        assert response.status_code == 422
        assert message in response.content.decode()
    assert status(job) == JobStatus.PENDING


def test_bulk__exactly_the_limit_is_accepted(operator_client: Client, make_job) -> None:
    job = make_job()
    ids = [job.pk, *range(10**6, 10**6 + BULK_MAX - 1)]
    html = post(operator_client, "cancel", ids)
    assert "1 pending job will be cancelled." in html
    assert f"{BULK_MAX - 1} selected jobs no longer exist." in html


def test_bulk__a_viewer_is_refused_and_sees_no_checkboxes(viewer_client: Client, make_job) -> None:
    job = make_job()
    for data in (
        {"action": "cancel", "job": [job.pk]},
        {"action": "cancel", "job": [job.pk], "confirmed": "on"},
    ):
        assert viewer_client.post(URL, data).status_code == 403
    assert status(job) == JobStatus.PENDING
    html = viewer_client.get("/").content.decode()
    assert 'name="job"' not in html
    assert 'id="bulk-form"' not in html
    assert "select-all" not in html


def test_bulk__an_operator_sees_a_checkbox_per_row_and_the_bulk_bar(
    operator_client: Client, make_job
) -> None:
    jobs = [make_job(), make_job(status="completed")]
    html = operator_client.get("/").content.decode()
    for job in jobs:
        assert f'<input type="checkbox" name="job" value="{job.pk}" form="bulk-form"' in html
    form = re.search(r'<form id="bulk-form".*?</form>', html, re.S)
    assert form and 'method="post"' in form.group(0) and "csrfmiddlewaretoken" in form.group(0)
    assert 'name="action" value="cancel"' in form.group(0)
    assert 'name="action" value="retry"' in form.group(0)
    assert 'class="select-all"' in html


def test_bulk__get_is_not_allowed_and_anonymous_users_are_sent_to_log_in(
    client: Client, operator_client: Client
) -> None:
    assert operator_client.get(URL).status_code == 405
    anonymous = Client()
    response = anonymous.post(URL, {"action": "cancel", "job": ["1"]})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_bulk__needs_the_csrf_token(operator, make_job) -> None:
    job = make_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    data = {"action": "cancel", "job": [job.pk], "confirmed": "on"}
    assert client.post(URL, data).status_code == 403
    assert status(job) == JobStatus.PENDING


def test_bulk__next_pointing_at_another_site_falls_back_to_the_list(
    operator_client: Client, make_job
) -> None:
    job = make_job()
    data = {"action": "cancel", "job": [job.pk], "confirmed": "on", "next": "https://evil.example/"}
    response = operator_client.post(URL, data)
    assert response.status_code == 302 and response["Location"] == "/"


def test_bulk__names_and_refusals_are_escaped(operator_client: Client, make_job) -> None:
    job = make_job(status="completed", name="<img src=x onerror=alert(1)>")
    html = post(operator_client, "cancel", [job.pk])
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    response = operator_client.post(
        URL, {"action": "cancel", "job": [job.pk], "confirmed": "on"}, headers=HTMX
    )
    outcome = response.content.decode()
    assert "<img src=x" not in outcome and "&lt;img src=x" in outcome


def test_bulk__the_plan_reads_the_jobs_in_a_fixed_number_of_queries(
    operator_client: Client, make_job, add_failure
) -> None:
    def queries(ids: list[int]) -> int:
        with CaptureQueriesContext(connection) as captured:
            post(operator_client, "retry", ids)
        return len(captured)

    few = [make_job(status="completed", failed=1).pk]
    add_failure(ReindexJob.objects.get(pk=few[0]))
    queries(few)  # warm the session and permission caches
    many = [make_job(status="completed", failed=1).pk for _ in range(20)]
    for pk in many:
        add_failure(ReindexJob.objects.get(pk=pk))
    assert queries(few + many) == queries(few)
