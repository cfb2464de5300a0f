"""Re-run: `/jobs/new/?from=<id>` prefills the form with a finished job's settings, editable;
sending it queues a new job. An unknown or unfinished job gives a message, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import NAME_MAX, JobSpec

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]
SETTINGS = {
    "store": "flaky(sqlite-vec,transient=0.2,seed=3)",
    "collection": "rerun-me",
    "batch_size": 17,
    "max_retries": 5,
    "max_failed_ratio": 0.25,
    "slices": 3,
    "mode": "incremental",
    "cleanup": "full",
    "approve": "auto",
    "max_docs_per_second": 250.0,
    "name": "nightly docs",
}


def prefilled(response: Any) -> dict[str, Any]:
    form = response.context["form"]
    return {name: form[name].value() for name in JobSpec.model_fields}


def test_detail__finished_job_links_to_a_prefilled_form(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="completed", processed=5)
    html = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/new/?from={job.pk}">Re-run</a>' in html


@pytest.mark.parametrize("status", ["pending", "running"])
def test_detail__a_job_still_going_has_no_rerun_link(
    operator_client: Client, make_job: MakeJob, status: str
) -> None:
    job = make_job(status=status)
    assert f"?from={job.pk}" not in operator_client.get(f"/jobs/{job.pk}/").content.decode()


def test_detail__a_viewer_sees_no_rerun_link(viewer_client: Client, make_job: MakeJob) -> None:
    job = make_job(status="completed", processed=5)
    assert f"?from={job.pk}" not in viewer_client.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_new_from__prefills_every_setting_of_the_finished_job(
    operator_client: Client, make_job: MakeJob, status: str
) -> None:
    job = make_job(status=status, processed=2, **SETTINGS)
    response = operator_client.get(f"/jobs/new/?from={job.pk}")
    assert response.status_code == 200
    assert prefilled(response) == {
        "source": "jsonl:docs.jsonl",
        "embedder": "hashing",
        **SETTINGS,
        "name": "nightly docs (re-run)",
    }
    html = response.content.decode()
    assert f"Re-run job #{job.pk}" in html
    assert 'value="nightly docs (re-run)"' in html


def test_new_from__a_long_name_keeps_the_suffix_within_the_limit(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="completed", name="x" * NAME_MAX)
    name = prefilled(operator_client.get(f"/jobs/new/?from={job.pk}"))["name"]
    assert len(name) == NAME_MAX and name.endswith(" (re-run)")


def test_new_from__the_edited_form_queues_a_new_job_and_leaves_the_original(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="completed", processed=5, **SETTINGS)
    data = prefilled(operator_client.get(f"/jobs/new/?from={job.pk}"))
    data["batch_size"] = 3
    response = operator_client.post("/jobs/create/", data)
    assert response.status_code == 302
    rerun = ReindexJob.objects.exclude(pk=job.pk).get()
    assert response["Location"] == f"/jobs/{rerun.pk}/"
    assert rerun.status == JobStatus.PENDING and rerun.processed_docs == 0
    assert (rerun.name, rerun.batch_size, rerun.store, rerun.collection) == (
        "nightly docs (re-run)",
        3,
        SETTINGS["store"],
        SETTINGS["collection"],
    )
    job.refresh_from_db()
    assert (job.status, job.processed_docs, job.batch_size) == (JobStatus.COMPLETED, 5, 17)


def test_new_from__an_unfinished_job_is_409_with_a_message_and_an_empty_form(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status="running", **SETTINGS)
    response = operator_client.get(f"/jobs/new/?from={job.pk}")
    assert response.status_code == 409
    html = response.content.decode()
    assert f"Job #{job.pk} is running; it can be re-run once it has finished." in html
    assert prefilled(response)["collection"] == "default"


@pytest.mark.parametrize("raw", ["999999", "abc", "", "-1"])
def test_new_from__an_unknown_job_is_404_with_an_escaped_message(
    operator_client: Client, raw: str
) -> None:
    response = operator_client.get("/jobs/new/", {"from": raw})
    assert response.status_code == 404
    html = response.content.decode()
    assert "to re-run; the form starts empty." in html
    assert 'id="new-job-form"' in html


def test_new_from__the_message_escapes_what_was_asked_for(operator_client: Client) -> None:
    html = operator_client.get("/jobs/new/", {"from": "<b>x</b>"}).content.decode()
    assert "There is no job &#x27;&lt;b&gt;x&lt;/b&gt;&#x27; to re-run" in html
    assert "<b>x</b>" not in html


def test_new_from__a_viewer_is_refused_with_403(viewer_client: Client, make_job: MakeJob) -> None:
    job = make_job(status="completed")
    assert viewer_client.get(f"/jobs/new/?from={job.pk}").status_code == 403
