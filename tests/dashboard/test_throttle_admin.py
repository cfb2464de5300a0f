"""The admin's "Set rate limit…" action: an intermediate form, then set_throttle for each job
(never a bare save); refused for viewers; the limit shown on the job's page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from reindexer.models import EventKind, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/reindexer/reindexjob/"
MakeJob = Callable[..., ReindexJob]


def act(client: Client, *jobs: ReindexJob, **extra: str) -> Any:
    data = {"action": "set_rate_limit", "_selected_action": [j.pk for j in jobs], **extra}
    return client.post(CHANGELIST, data, follow=True)


def limit_of(job: ReindexJob) -> float | None:
    return ReindexJob.objects.get(pk=job.pk).max_docs_per_second


def test_action__asks_for_the_rate_first(admin_client: Client, make_job: MakeJob) -> None:
    job = make_job()
    response = act(admin_client, job)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="max_docs_per_second"' in html and 'name="apply"' in html
    assert f'name="_selected_action" value="{job.pk}"' in html
    assert limit_of(job) is None  # nothing done until the form is sent


def test_action__sets_each_jobs_limit_and_reports_the_finished_ones(
    admin_client: Client, make_job: MakeJob
) -> None:
    pending = make_job()
    running = make_job(status=JobStatus.RUNNING, max_docs_per_second=10)
    done = make_job(status=JobStatus.COMPLETED)
    response = act(admin_client, pending, running, done, apply="1", max_docs_per_second="120")
    text = response.content.decode()
    assert (limit_of(pending), limit_of(running), limit_of(done)) == (120, 120, None)
    assert f"Job {pending.pk}: limit set to 120 docs/s." in text
    assert f"Job {running.pk}: limit changed from 10 to 120 docs/s." in text
    assert f"#{done.pk}: job {done.pk} is completed: only a pending or running job" in text
    assert running.events.filter(kind=EventKind.THROTTLED, actor="admin").exists()


def test_action__zero_lifts_the_limit(admin_client: Client, make_job: MakeJob) -> None:
    job = make_job(max_docs_per_second=50)
    act(admin_client, job, apply="1", max_docs_per_second="0")
    assert limit_of(job) is None


@pytest.mark.parametrize("typed", ["-3", "abc", "1e9", "nan"])
def test_action__a_bad_rate_shows_the_form_again_with_the_error(
    admin_client: Client, make_job: MakeJob, typed: str
) -> None:
    job = make_job(max_docs_per_second=50)
    html = act(admin_client, job, apply="1", max_docs_per_second=typed).content.decode()
    assert "the rate limit must be" in html and 'name="apply"' in html
    assert limit_of(job) == 50


def test_action__needs_the_operate_permission(client: Client, make_job: MakeJob) -> None:
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client.force_login(staff)
    job = make_job()
    assert "set_rate_limit" not in client.get(CHANGELIST).content.decode()
    act(client, job, apply="1", max_docs_per_second="5")
    assert limit_of(job) is None


def test_change_page__shows_the_limit_read_only(admin_client: Client, make_job: MakeJob) -> None:
    job = make_job(max_docs_per_second=75)
    html = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    assert "field-max_docs_per_second" in html and "75.0" in html
    assert 'name="max_docs_per_second"' not in html  # no input: only set_throttle changes it
