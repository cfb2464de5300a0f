"""Who may see and do what: login, view and operate permissions, CSRF, methods, 404."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from reindexer.models import JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

GET_PAGES = ["/", "/jobs/new/", "/jobs/{pk}/"]
POSTS = ["/jobs/create/", "/jobs/{pk}/cancel/", "/jobs/{pk}/retry-failed/"]


@pytest.mark.parametrize("path", GET_PAGES + POSTS)
def test_anonymous__is_sent_to_the_login_page(client: Client, make_job, path: str) -> None:
    job = make_job()
    url = path.format(pk=job.pk)
    response = client.post(url) if path in POSTS else client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page__has_the_standard_fields(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html
    assert 'name="password"' in html


def test_login__with_the_form_reaches_the_jobs_list(client: Client, viewer: User) -> None:
    response = client.post(
        "/accounts/login/", {"username": "viewer", "password": "pw-viewer"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert b"Reindex jobs" in response.content


def test_logout__is_a_post_button(viewer_client: Client) -> None:
    html = viewer_client.get("/").content.decode()
    assert 'action="/accounts/logout/"' in html
    assert viewer_client.post("/accounts/logout/").status_code == 302
    assert viewer_client.get("/").status_code == 302


def test_user_without_view_permission__gets_403(client: Client, make_job) -> None:
    job = make_job()
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get("/").status_code == 403
    assert client.get(f"/jobs/{job.pk}/").status_code == 403


@pytest.mark.parametrize("path", POSTS)
def test_viewer__gets_403_on_every_post(viewer_client: Client, make_job, path: str) -> None:
    job = make_job()
    response = viewer_client.post(path.format(pk=job.pk), {"source": "jsonl:docs.jsonl"})
    assert response.status_code == 403
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.PENDING
    assert ReindexJob.objects.count() == 1


def test_viewer__gets_403_on_the_new_job_page(viewer_client: Client) -> None:
    assert viewer_client.get("/jobs/new/").status_code == 403


def test_viewer__sees_no_operate_buttons(viewer_client: Client, make_job) -> None:
    job = make_job(status="running")
    for url in ["/", f"/jobs/{job.pk}/"]:
        html = viewer_client.get(url).content.decode()
        assert ">Cancel</button>" not in html
        assert 'data-can-operate="false"' in html
    assert "New job" not in viewer_client.get("/").content.decode()


@pytest.mark.parametrize("path", POSTS)
def test_posts__without_a_csrf_token_are_refused(operator, make_job, path: str) -> None:
    job = make_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(path.format(pk=job.pk), {"source": "jsonl:docs.jsonl"})
    assert response.status_code == 403
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.PENDING
    assert ReindexJob.objects.count() == 1


def test_cancel__with_the_csrf_header_htmx_sends_is_accepted(operator, make_job) -> None:
    job = make_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    page = client.get(f"/jobs/{job.pk}/")
    token = page.cookies["csrftoken"].value
    assert (
        f'hx-headers=\'{{"x-csrftoken": "{page.context["csrf_token"]}"}}\'' in page.content.decode()
    )
    response = client.post(
        f"/jobs/{job.pk}/cancel/", headers={"X-CSRFToken": token, "HX-Request": "true"}
    )
    assert response.status_code == 200
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


@pytest.mark.parametrize("path", POSTS)
def test_posts__refuse_get_and_change_nothing(operator_client: Client, make_job, path: str) -> None:
    job = make_job()
    assert operator_client.get(path.format(pk=job.pk)).status_code == 405
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.PENDING


@pytest.mark.parametrize("path", ["/", "/jobs/new/", "/jobs/{pk}/"])
def test_pages__refuse_post(operator_client: Client, make_job, path: str) -> None:
    job = make_job()
    assert operator_client.post(path.format(pk=job.pk)).status_code == 405


@pytest.mark.parametrize("path", ["/jobs/999/", "/jobs/999/failures/1/"])
def test_unknown_job__is_404_on_get(operator_client: Client, path: str) -> None:
    assert operator_client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/jobs/999/cancel/", "/jobs/999/retry-failed/"])
def test_unknown_job__is_404_on_post(operator_client: Client, path: str) -> None:
    assert operator_client.post(path).status_code == 404


def test_failure_of_another_job__is_404(viewer_client: Client, make_job, add_failure) -> None:
    one, other = make_job(status="completed"), make_job(status="completed")
    failure = add_failure(other)
    assert viewer_client.get(f"/jobs/{one.pk}/failures/{failure.pk}/").status_code == 404
    assert viewer_client.get(f"/jobs/{other.pk}/failures/{failure.pk}/").status_code == 200
