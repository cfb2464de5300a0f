"""The admin: pages render, records are read-only, actions go through the guarded transitions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from reindexer.models import EventKind, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/reindexer/reindexjob/"


def test_admin_pages__render_for_a_superuser(admin_client: Client, make_job, add_failure) -> None:
    job = make_job(status="completed", processed=5, failed=1)
    failure = add_failure(job)
    for url in [
        CHANGELIST,
        f"{CHANGELIST}?status__exact=completed",
        f"{CHANGELIST}?q=docs",
        f"{CHANGELIST}{job.pk}/change/",
        "/admin/reindexer/batchfailure/",
        f"/admin/reindexer/batchfailure/{failure.pk}/change/",
        "/admin/reindexer/jobevent/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    html = admin_client.get(CHANGELIST).content.decode()
    assert "completed with errors" in html
    assert "100% (5 / 5)" in html


def readonly_value(html: str, field: str) -> str:
    """The text of a read-only field on a change page."""
    found = re.search(
        rf'<div class="form-row field-{field}">.*?<div class="readonly">(.*?)</div>', html, re.S
    )
    assert found, f"no read-only field {field!r}"
    return found.group(1).strip()


def inline_cells(html: str, prefix: str, field: str) -> list[str]:
    """The texts of one column of an inline (`prefix` is its formset's, as in `events-0`)."""
    rows = re.findall(rf'<tr class="form-row[^"]*"\s+id="{prefix}-\d+">.*?</tr>', html, re.S)
    cells = [re.search(rf'<td class="field-{field}">\s*<p>(.*?)</p>', row, re.S) for row in rows]
    return [cell.group(1).strip() for cell in cells if cell]


def test_admin_job_change_page__shows_the_job_its_timeline_and_its_failures(
    admin_client: Client, make_job, add_failure
) -> None:
    job = make_job(status="completed", name="nightly <docs>", total=5, processed=5, failed=1)
    add_failure(job, error_type="ValueError", message="bad <doc> & co")
    html = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    assert readonly_value(html, "name") == escape("nightly <docs>")
    assert readonly_value(html, "status_display") == "completed with errors"
    assert readonly_value(html, "progress_display") == "100% (5 / 5)"
    assert readonly_value(html, "total_docs") == "5"
    assert readonly_value(html, "processed_docs") == "5"
    assert readonly_value(html, "failed_docs") == "1"
    assert readonly_value(html, "worker") == "worker-test"
    kinds = inline_cells(html, "events", "kind")
    assert kinds[:2] == ["Created", "Claimed"], kinds
    assert "Completed" in kinds
    assert "queued jsonl:docs.jsonl" in " ".join(inline_cells(html, "events", "detail"))
    prefix = re.search(r'name="([\w-]+)-TOTAL_FORMS" value="1"', html)
    assert prefix, "no inline with one failure"
    assert inline_cells(html, prefix.group(1), "error_type") == ["ValueError"]
    assert inline_cells(html, prefix.group(1), "message") == [escape("bad <doc> & co")]
    assert inline_cells(html, prefix.group(1), "doc_count") == ["2"]


def test_admin_failure_change_page__shows_the_error_traceback_and_doc_ids(
    admin_client: Client, make_job, add_failure
) -> None:
    job = make_job(status="completed", name="nightly", processed=5, failed=2)
    failure = add_failure(
        job,
        error_type="ValueError",
        message="bad <doc> & co",
        traceback="Traceback (most recent call last):\nValueError: bad <doc>",
        doc_ids=["doc-3", "doc-4"],
    )
    html = admin_client.get(f"/admin/reindexer/batchfailure/{failure.pk}/change/").content.decode()
    assert readonly_value(html, "error_type") == "ValueError"
    assert readonly_value(html, "message") == escape("bad <doc> & co")
    assert escape("ValueError: bad <doc>") in readonly_value(html, "traceback_display")
    assert "doc-3" in readonly_value(html, "doc_ids")
    assert "doc-4" in readonly_value(html, "doc_ids")
    assert "nightly" in readonly_value(html, "job")


def test_admin_job__is_read_only(admin_client: Client, make_job) -> None:
    job = make_job()
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    page = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    assert 'name="batch_size"' not in page
    admin_client.post(f"{CHANGELIST}{job.pk}/change/", {"batch_size": 7, "status": "completed"})
    job.refresh_from_db()
    assert (job.batch_size, job.status) == (200, JobStatus.PENDING)


def _act(client: Client, action: str, *jobs: ReindexJob, follow: bool = True):
    data = {"action": action, "_selected_action": [j.pk for j in jobs]}
    return client.post(CHANGELIST, data, follow=follow)


def test_admin_cancel_action__uses_the_guarded_transition(admin_client: Client, make_job) -> None:
    pending, running, done = make_job(), make_job(status="running"), make_job(status="completed")
    response = _act(admin_client, "cancel_jobs", pending, running, done)
    assert response.status_code == 200
    pending.refresh_from_db(), running.refresh_from_db(), done.refresh_from_db()
    assert pending.status == JobStatus.CANCELLED
    assert running.status == JobStatus.RUNNING and running.cancel_requested_at is not None
    assert done.status == JobStatus.COMPLETED
    assert running.events.filter(kind=EventKind.CANCEL_REQUESTED, actor="admin").exists()
    text = response.content.decode()
    assert f"#{done.pk}: job {done.pk} cannot be cancelled: it is completed" in text
    assert "Cancelled or asked to cancel 2 job(s)." in text


def test_admin_retry_action__queues_or_reports(admin_client: Client, make_job, add_failure) -> None:
    with_failures, clean = make_job(status="completed", failed=1), make_job(status="completed")
    add_failure(with_failures)
    text = _act(admin_client, "retry_failed_jobs", with_failures, clean).content.decode()
    retry = ReindexJob.objects.get(retry_of=with_failures)
    assert f"failures queued as job #{retry.pk}" in text
    assert "no unresolved failures to retry" in text


def test_admin_actions__need_the_operate_permission(client: Client, make_job) -> None:
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client.force_login(staff)
    job = make_job()
    page = client.get(CHANGELIST).content.decode()
    assert "cancel_jobs" not in page
    _act(client, "cancel_jobs", job)
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_admin_failures__searchable_by_document_id(
    admin_client: Client, make_job, add_failure
) -> None:
    job = make_job(status="completed", failed=3)
    hit = add_failure(job, doc_ids=["alpha-17", "beta"], message="first")
    second = add_failure(job, doc_ids=["gamma"], message="second")
    quoted = add_failure(job, doc_ids=['id "quoted" é'], message="third")
    html = admin_client.get("/admin/reindexer/batchfailure/", {"q": "alpha-17"}).content.decode()
    assert f"/admin/reindexer/batchfailure/{hit.pk}/change/" in html
    assert "second" not in html
    html = admin_client.get("/admin/reindexer/batchfailure/", {"q": '"quoted" é'}).content.decode()
    assert f"/admin/reindexer/batchfailure/{quoted.pk}/change/" in html
    assert "first" not in html
    # The text fields still match as usual.
    html = admin_client.get("/admin/reindexer/batchfailure/", {"q": "second"}).content.decode()
    assert f"/admin/reindexer/batchfailure/{second.pk}/change/" in html
    assert f"/admin/reindexer/batchfailure/{hit.pk}/change/" not in html


def test_admin_delete__only_finished_jobs(admin_client: Client, make_job) -> None:
    running, done = make_job(status="running"), make_job(status="completed")
    assert admin_client.get(f"{CHANGELIST}{running.pk}/delete/").status_code == 403
    assert admin_client.get(f"{CHANGELIST}{done.pk}/delete/").status_code == 200


def test_admin_resume_action__queues_failed_jobs_and_reports_each_refusal(
    admin_client: Client, make_job
) -> None:
    failed, done = make_job(status="failed", processed=3), make_job(status="completed")
    text = _act(admin_client, "resume_jobs", failed, done).content.decode()
    failed.refresh_from_db(), done.refresh_from_db()
    assert failed.status == JobStatus.PENDING
    assert failed.processed_docs == 3, "resumed with its counters"
    assert failed.events.filter(kind=EventKind.RESUMED, actor="admin").exists()
    assert done.status == JobStatus.COMPLETED
    assert "Resumed 1 job(s) from their checkpoint." in text
    assert f"#{done.pk}: job {done.pk} cannot be resumed: it is completed" in text


def test_admin_resume_action__needs_the_operate_permission(client: Client, make_job) -> None:
    from django.contrib.auth.models import Permission

    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client.force_login(staff)
    failed = make_job(status="failed")
    assert "resume_jobs" not in client.get(CHANGELIST).content.decode()
    _act(client, "resume_jobs", failed)
    assert ReindexJob.objects.get(pk=failed.pk).status == JobStatus.FAILED
    staff.user_permissions.add(Permission.objects.get(codename="operate_reindexjob"))
    assert "resume_jobs" in client.get(CHANGELIST).content.decode()
    _act(client, "resume_jobs", failed)
    assert ReindexJob.objects.get(pk=failed.pk).status == JobStatus.PENDING


WORKERS = "/admin/reindexer/workerprocess/"


def _worker(make_job, **fields):
    from django.utils import timezone

    from reindexer.models import WorkerProcess

    values = {
        "name": "worker-a",
        "host": "host-1",
        "pid": 4242,
        "started_at": timezone.now(),
        "heartbeat_at": timezone.now(),
        "current_job": make_job(status="running"),
        "jobs_done": 7,
    }
    return WorkerProcess.objects.create(**{**values, **fields})


def test_admin_workers__listed_with_their_current_job_and_read_only(
    admin_client: Client, make_job
) -> None:
    from reindexer.models import WorkerProcess

    worker = _worker(make_job, name="worker <a>")
    html = admin_client.get(WORKERS).content.decode()
    assert escape("worker <a>") in html and "host-1" in html and "4242" in html
    assert escape(str(worker.current_job)) in html
    page = admin_client.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert readonly_value(page, "jobs_done") == "7"
    assert 'name="pid"' not in page
    assert admin_client.get(f"{WORKERS}add/").status_code == 403
    assert admin_client.get(f"{WORKERS}{worker.pk}/delete/").status_code == 403
    admin_client.post(f"{WORKERS}{worker.pk}/change/", {"pid": 1, "name": "x"})
    assert WorkerProcess.objects.get(pk=worker.pk).pid == 4242


def test_admin_workers__need_the_view_permission(client: Client, make_job) -> None:
    from django.contrib.auth.models import Permission

    worker = _worker(make_job)
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(WORKERS).status_code == 403
    assert client.get(f"{WORKERS}{worker.pk}/change/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_workerprocess"))
    assert client.get(WORKERS).status_code == 200
    assert client.get(f"{WORKERS}{worker.pk}/change/").status_code == 200


def test_admin_job_samples__have_no_page_of_their_own(admin_client: Client) -> None:
    assert admin_client.get("/admin/reindexer/jobsample/").status_code == 404
    assert "jobsample" not in admin_client.get("/admin/").content.decode()


def test_admin_job_list__has_no_month_hierarchy_but_a_date_filter(
    admin_client: Client, make_job
) -> None:
    make_job()
    html = admin_client.get(CHANGELIST).content.decode()
    assert 'class="toplinks"' not in html, "the date hierarchy's bar"
    assert "created_at__gte=" in html, "the created date filter's links"
