"""Sliced jobs on the dashboard: the lists show the jobs as operators queued them, a sliced job's
page shows its slices, their failures and their events, and its actions act on the whole job."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from dashboard.summary import summary
from reindexer import slicing
from reindexer.jobs import failed_doc_ids
from reindexer.models import BatchFailure, EventKind, JobEvent, JobStatus, ReindexJob
from tests.dashboard.slices import MakeJob, end_slice, run_slice, sliced_job

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _slice_rows(html: str) -> dict[int, str]:
    """The slice rows of a detail page, by slice number."""
    rows = re.findall(r'<tr class="slice-row".*?</tr>', html, re.S)
    numbered = {int(re.search(r'data-slice-number="(\d+)"', row).group(1)): row for row in rows}  # type: ignore[union-attr]
    return numbered


def _attr(html: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', html)
    assert found, f"no {name} in {html!r}"
    return found.group(1)


# -- lists: top-level jobs only --------------------------------------------------------------


def test_list__shows_the_sliced_job_once_with_its_slice_count(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    plain = make_job()
    html = viewer_client.get("/").content.decode()
    ids = {int(i) for i in re.findall(r'<tr id="job-row-(\d+)"', html)}
    assert ids == {job.pk, plain.pk}
    row = re.search(rf'<tr id="job-row-{job.pk}".*?</tr>', html, re.S)
    assert row and "4 slices" in row.group(0)
    # The tabs count jobs, not slices: 4 pending slices would make "Pending 5".
    tabs = dict(re.findall(r'>(Pending|Running)\s*<span class="count">([^<]+)<', html))
    assert tabs == {"Pending": "1", "Running": "1"}


def test_list__tiles_count_the_sliced_job_once(viewer_client: Client, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "w1")
    run_slice(slices[1], "w2")
    figures = summary()
    assert (figures.running, figures.queued) == (1, 0)


def test_queue__lists_top_level_jobs_only(viewer_client: Client, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    waiting = make_job()
    html = viewer_client.get("/queue/").content.decode()
    queued = {int(i) for i in re.findall(r'data-job-id="(\d+)"', html)}
    assert waiting.pk in queued
    assert not queued & {s.pk for s in slices}


def test_list__query_count_does_not_grow_with_sliced_jobs(
    viewer_client: Client, make_job: MakeJob
) -> None:
    _, first = sliced_job(make_job, collection="one")
    run_slice(first[0], "w", processed=1)  # the tiles' rate query runs once there is a slice
    viewer_client.get("/")  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        viewer_client.get("/")
    for n in range(5):
        _, slices = sliced_job(make_job, collection=f"c{n}")
        run_slice(slices[0], f"w{n}", processed=1)
    with CaptureQueriesContext(connection) as many:
        html = viewer_client.get("/").content.decode()
    assert html.count("4 slices") == 6
    assert len(many) == len(few)


# -- a sliced job's page ---------------------------------------------------------------------


def test_detail__before_the_split_says_it_will_run_as_n_slices(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job = make_job(slices=6)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'id="job-slices-{job.pk}"' in html
    assert "Will run as 6 slices" in html


def test_detail__shows_each_slice_with_progress_worker_and_link(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "worker-a", processed=slices[0].total_docs or 0)
    end_slice(ReindexJob.objects.get(pk=slices[0].pk))
    run_slice(slices[1], "worker-b", processed=0, heartbeat_age=2)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    rows = _slice_rows(html)
    assert sorted(rows) == [1, 2, 3, 4]
    assert _attr(rows[1], "data-status") == "completed"
    assert _attr(rows[1], "aria-valuenow") == "100"
    assert _attr(rows[2], "data-status") == "running"
    assert _attr(rows[2], "data-worker") == "worker-b"
    assert 'role="progressbar"' in rows[2] and _attr(rows[2], "aria-valuenow") == "0"
    assert "worker-b" in rows[2] and "2s ago" in rows[2]
    assert _attr(rows[3], "data-status") == "pending"
    for number, row in rows.items():
        assert f'href="/jobs/{slices[number - 1].pk}/"' in row
    # The job's own figures are the parent's; its worker line names the slices' workers.
    progress = re.search(rf'<section id="job-progress-{job.pk}".*?</section>', html, re.S)
    assert progress and "worker-b" in progress.group(0)


def test_detail__of_a_slice_names_its_job(viewer_client: Client, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    html = viewer_client.get(f"/jobs/{slices[2].pk}/").content.decode()
    assert "Slice 3 of job" in html
    assert f'<a href="/jobs/{job.pk}/">#{job.pk}</a>' in html
    assert f'id="job-slices-{slices[2].pk}"' not in html


def test_detail__escapes_a_slice_error(viewer_client: Client, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "w1")
    end_slice(ReindexJob.objects.get(pk=slices[0].pk), JobStatus.FAILED, "<script>x()</script>")
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "<script>x()</script>" not in html
    assert escape("<script>x()</script>") in html


def test_detail__lists_the_failures_of_every_slice_with_their_slice(
    viewer_client: Client, make_job: MakeJob, add_failure
) -> None:
    job, slices = sliced_job(make_job)
    first = add_failure(slices[0], doc_ids=["doc-0"], message="first <slice>")
    last = add_failure(slices[3], doc_ids=["doc-4"], error_type="ValueError")
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    panel = re.search(rf'<section class="card" id="job-failures-{job.pk}".*?</section>', html, re.S)
    assert panel
    assert f'id="failure-{first.pk}"' in panel.group(0)
    assert f'id="failure-{last.pk}"' in panel.group(0)
    assert f'<a href="/jobs/{slices[3].pk}/">4</a>' in panel.group(0)
    assert escape("first <slice>") in panel.group(0)
    assert '<span class="count">2</span>' in panel.group(0)
    # A slice's failure opens under its sliced job's URL, and on the failures page.
    detail = viewer_client.get(f"/jobs/{job.pk}/failures/{last.pk}/", headers=HTMX)
    assert detail.status_code == 200 and "doc-4" in detail.content.decode()
    listing = viewer_client.get(f"/jobs/{job.pk}/failures/").content.decode()
    assert f'id="failure-row-{first.pk}"' in listing and f'id="failure-row-{last.pk}"' in listing
    # Another job's failure does not.
    other = add_failure(make_job(), doc_ids=["x"])
    assert viewer_client.get(f"/jobs/{job.pk}/failures/{other.pk}/").status_code == 404


def test_detail__timeline_shows_the_slices_events_labelled_in_few_queries(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    viewer_client.get(f"/jobs/{job.pk}/")
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(f"/jobs/{job.pk}/")
    for n, slice_job in enumerate(slices):
        run_slice(slice_job, f"w{n}")
    with CaptureQueriesContext(connection) as many:
        html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    timeline = re.search(rf'<ol class="timeline" id="job-timeline-{job.pk}".*?</ol>', html, re.S)
    assert timeline
    claimed = re.findall(
        r'<span class="event-kind">Claimed</span>\s*<span class="event-slice">slice (\d)</span>',
        timeline.group(0),
    )
    assert sorted(claimed) == ["1", "2", "3", "4"]
    assert "split into 4 slices" in timeline.group(0)
    assert len(many) == len(few)


# -- acting on a sliced job ------------------------------------------------------------------


def test_cancel__on_a_slice_page_stops_the_whole_job(
    operator_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "w1")
    response = operator_client.post(f"/jobs/{slices[1].pk}/cancel/", headers=HTMX)
    assert response.status_code == 200
    assert f"Cancel requested for job #{job.pk}" in response.content.decode()
    states = dict(ReindexJob.objects.filter(parent=job).values_list("slice_number", "status"))
    assert states == {1: "running", 2: "cancelled", 3: "cancelled", 4: "cancelled"}
    job.refresh_from_db()
    assert job.is_cancelling
    assert ReindexJob.objects.get(pk=slices[0].pk).cancel_requested_at is not None


def test_actions__need_the_operate_permission(viewer_client: Client, make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    for url in [f"/jobs/{job.pk}/cancel/", f"/jobs/{slices[0].pk}/cancel/",
                f"/jobs/{job.pk}/force-cancel/", f"/jobs/{job.pk}/retry-failed/"]:  # fmt: skip
        assert viewer_client.post(url).status_code == 403, url
    assert ReindexJob.objects.get(pk=job.pk).cancel_requested_at is None


def test_retry_failed__queues_one_retry_over_every_slice_failure(
    operator_client: Client, make_job: MakeJob, add_failure
) -> None:
    job, slices = sliced_job(make_job)
    for n, slice_job in enumerate(slices):
        run_slice(slice_job, f"w{n}", processed=slice_job.total_docs or 0, failed=1)
        add_failure(slice_job, doc_ids=[f"doc-{n}"], batch_number=1)
        end_slice(ReindexJob.objects.get(pk=slice_job.pk))
    token = slices_taken_over(job)
    job.complete(token, "w0")
    response = operator_client.post(f"/jobs/{slices[2].pk}/retry-failed/")
    assert response.status_code == 302
    (retry,) = ReindexJob.objects.filter(retry_of=job)
    assert response["Location"] == f"/jobs/{retry.pk}/"
    assert failed_doc_ids(job) == ["doc-0", "doc-1", "doc-2", "doc-3"]
    assert retry.slices == 1 and retry.parent_id is None


def slices_taken_over(job: ReindexJob) -> uuid.UUID:
    """The sliced job held by a worker that finishes it, as after its last slice ended."""
    taken = slicing.take_over(job.pk, "w0")
    assert taken is not None
    return taken[1]


def test_force_cancel__ends_a_sliced_job_whose_slice_workers_died(
    operator_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "dead-1", heartbeat_age=120)
    run_slice(slices[1], "dead-2", heartbeat_age=120)
    # Two slices still wait for a worker: the job is not stalled, nothing to force.
    assert "Force cancel" not in operator_client.get(f"/jobs/{job.pk}/").content.decode()
    run_slice(slices[2], "dead-3", heartbeat_age=120)
    run_slice(slices[3], "dead-4", heartbeat_age=120)
    ReindexJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=2))
    page = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Force cancel" in page and "stalled" in page
    response = operator_client.post(f"/jobs/{job.pk}/force-cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert set(ReindexJob.objects.filter(parent=job).values_list("status", flat=True)) == {
        "cancelled"
    }
    assert job.events.filter(kind=EventKind.CANCELLED).exists()


def test_force_cancel__refused_while_a_slice_worker_still_responds(
    operator_client: Client, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "dead", heartbeat_age=120)
    run_slice(slices[1], "alive", heartbeat_age=1)
    response = operator_client.post(f"/jobs/{job.pk}/force-cancel/")
    assert response.status_code == 409
    assert "alive" in response.content.decode()
    assert ReindexJob.objects.get(pk=slices[0].pk).status == JobStatus.RUNNING


# -- creating one ----------------------------------------------------------------------------


def test_new_job_form__has_slices_with_its_bounds_and_help(operator_client: Client) -> None:
    html = operator_client.get("/jobs/new/").content.decode()
    field = re.search(r'<input[^>]*name="slices"[^>]*>', html)
    assert field, "no slices field"
    assert 'min="1"' in field.group(0) and 'max="64"' in field.group(0)
    assert 'value="1"' in field.group(0)


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_create__refuses_an_absurd_slice_count(operator_client: Client, corpus, value: str) -> None:
    response = operator_client.post(
        "/jobs/create/", {"source": "jsonl:docs.jsonl", "slices": value, "batch_size": 10,
                          "max_retries": 1, "max_failed_ratio": 0.1, "embedder": "hashing",
                          "store": "sqlite-vec", "collection": "default"},
    )  # fmt: skip
    assert response.status_code == 422
    assert re.search(r"slices|whole number", response.content.decode(), re.I)
    assert not ReindexJob.objects.exists()


def test_create__queues_a_sliced_job(operator_client: Client, corpus) -> None:
    response = operator_client.post(
        "/jobs/create/", {"source": "jsonl:docs.jsonl", "slices": 4, "batch_size": 10,
                          "max_retries": 1, "max_failed_ratio": 0.1, "embedder": "hashing",
                          "store": "sqlite-vec", "collection": "default"},
    )  # fmt: skip
    assert response.status_code == 302
    assert ReindexJob.objects.get().slices == 4


# -- the admin -------------------------------------------------------------------------------


def test_admin__lists_jobs_by_default_and_slices_on_demand(admin_client: Client, make_job) -> None:
    job, slices = sliced_job(make_job)
    changelist = "/admin/reindexer/reindexjob/"

    def listed(query: str = "") -> set[int]:
        html = admin_client.get(changelist + query).content.decode()
        return {int(i) for i in re.findall(r'name="_selected_action" value="(\d+)"', html)}

    assert listed() == {job.pk}
    assert listed("?slices=only") == {s.pk for s in slices}
    assert listed("?slices=all") == {job.pk, *(s.pk for s in slices)}
    page = admin_client.get(f"{changelist}{slices[1].pk}/change/").content.decode()
    assert f"#{job.pk}" in page
    assert "4 slices" in admin_client.get(changelist).content.decode()


def test_admin_cancel__of_a_slice_cancels_its_job(admin_client: Client, make_job) -> None:
    job, slices = sliced_job(make_job)
    admin_client.post(
        "/admin/reindexer/reindexjob/?slices=only",
        {"action": "cancel_jobs", "_selected_action": [slices[0].pk]},
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED  # its slices were all pending
    assert JobEvent.objects.filter(job=job, kind=EventKind.CANCELLED).exists()
    assert not BatchFailure.objects.exists()


def test_bulk_retry__counts_the_failures_of_a_sliced_jobs_slices(
    operator_client: Client, make_job: MakeJob, add_failure
) -> None:
    job, slices = sliced_job(make_job)
    for n, slice_job in enumerate(slices):
        run_slice(slice_job, f"w{n}", processed=slice_job.total_docs or 0, failed=n % 2)
        if n % 2:
            add_failure(slice_job, doc_ids=[f"doc-{n}"])
        end_slice(ReindexJob.objects.get(pk=slice_job.pk))
    job.complete(slices_taken_over(job), "w0")
    data = {"action": "retry", "job": [job.pk]}
    html = operator_client.post("/jobs/bulk/", data).content.decode()
    assert "1 finished job will have its failed documents queued as a new job." in html
    operator_client.post("/jobs/bulk/", {**data, "confirmed": "on", "next": "/"})
    (retry,) = ReindexJob.objects.filter(retry_of=job)
    assert failed_doc_ids(job) == ["doc-1", "doc-3"]
    assert retry.status == JobStatus.PENDING
