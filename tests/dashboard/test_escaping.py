"""Names, messages, tracebacks, document ids and errors are escaped wherever they appear."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from dashboard.partials import render_job_push
from tests.dashboard.test_failures_csv import body_of

pytestmark = pytest.mark.django_db

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
HTMX = {"HX-Request": "true"}


def _assert_escaped(html: str) -> None:
    assert ESCAPED in html
    assert EVIL not in html
    assert "<script>alert" not in html


@pytest.fixture
def evil_job(make_job, add_failure):
    job = make_job(status="completed", name=f"name {EVIL}", processed=5, failed=2)
    failure = add_failure(
        job,
        error_type=f"Err{EVIL}",
        message=f"message {EVIL}",
        traceback=f"Traceback {EVIL}",
        doc_ids=[f"doc {EVIL}", '"><img src=x onerror=alert(2)>'],
    )
    job.events.create(kind="failed", actor=f"actor {EVIL}", detail=f"detail {EVIL}")
    return job, failure


def test_list__escapes_the_job_name(viewer_client: Client, evil_job) -> None:
    _assert_escaped(viewer_client.get("/").content.decode())
    _assert_escaped(viewer_client.get("/?q=<script>").content.decode())


def test_detail__escapes_names_events_and_failures(viewer_client: Client, evil_job) -> None:
    job, _ = evil_job
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    _assert_escaped(html)
    assert "actor &lt;script&gt;" in html
    assert "detail &lt;script&gt;" in html
    assert "message &lt;script&gt;" in html


def test_failure_detail__escapes_message_traceback_and_doc_ids(
    viewer_client: Client, evil_job
) -> None:
    job, failure = evil_job
    for headers in ({}, HTMX):
        html = viewer_client.get(
            f"/jobs/{job.pk}/failures/{failure.pk}/", headers=headers
        ).content.decode()
        _assert_escaped(html)
        assert "Traceback &lt;script&gt;" in html
        assert "doc &lt;script&gt;" in html
        assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
        assert "<img src=x" not in html


@pytest.fixture
def evil_previewed(evil_job, add_failure, data_dir):
    """A failure whose preview, locator and source line carry markup."""
    job, _ = evil_job
    path = data_dir / "docs.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"id": "doc-1", "text": f"line text {EVIL}"})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    failure = add_failure(
        job, doc_ids=["doc-1"], locator="line 2", preview=f"preview {EVIL}", message=EVIL
    )
    return job, failure


def test_failure_list__escapes_previews_types_and_ids(viewer_client: Client, evil_previewed):
    job, _ = evil_previewed
    for query in ({}, {"type": f"Err{EVIL}"}):
        html = viewer_client.get(f"/jobs/{job.pk}/failures/", query).content.decode()
        _assert_escaped(html)
        assert "<img src=x" not in html
    html = viewer_client.get(f"/jobs/{job.pk}/failures/").content.decode()
    assert "preview &lt;script&gt;" in html
    assert "?type=Err%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html


def test_failure_detail__escapes_the_preview(viewer_client: Client, evil_previewed) -> None:
    job, failure = evil_previewed
    html = viewer_client.get(f"/jobs/{job.pk}/failures/{failure.pk}/").content.decode()
    _assert_escaped(html)
    assert "preview &lt;script&gt;" in html


def test_failure_source__escapes_the_source_line(viewer_client: Client, evil_previewed) -> None:
    job, failure = evil_previewed
    html = viewer_client.get(f"/jobs/{job.pk}/failures/{failure.pk}/source/").content.decode()
    _assert_escaped(html)
    assert "line text &lt;script&gt;" in html
    assert "has changed" not in html


def test_failures_csv__carries_the_text_as_data(viewer_client: Client, evil_previewed) -> None:
    job, _ = evil_previewed
    response = viewer_client.get(f"/jobs/{job.pk}/failures.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"preview {EVIL}" in body_of(response)


def test_job_error__is_escaped(viewer_client: Client, make_job) -> None:
    from reindexer.models import ReindexJob

    job = make_job(status="failed")
    ReindexJob.objects.filter(pk=job.pk).update(error=EVIL)
    _assert_escaped(viewer_client.get(f"/jobs/{job.pk}/").content.decode())


def test_push__escapes_the_job_name(evil_job) -> None:
    job, _ = evil_job
    _assert_escaped(render_job_push(job))


def test_operate_responses__escape_the_name(operator_client: Client, make_job) -> None:
    job = make_job(name=EVIL)
    _assert_escaped(operator_client.post(f"/jobs/{job.pk}/cancel/", headers=HTMX).content.decode())
    _assert_escaped(operator_client.post(f"/jobs/{job.pk}/cancel/", headers=HTMX).content.decode())


def test_create_form__escapes_the_submitted_values(operator_client: Client, corpus) -> None:
    response = operator_client.post(
        "/jobs/create/",
        {
            "source": f"jsonl:{EVIL}",
            "embedder": "hashing",
            "store": EVIL,
            "collection": "default",
            "batch_size": 1,
            "max_retries": 1,
            "name": EVIL,
        },
    )
    assert response.status_code == 422
    _assert_escaped(response.content.decode())


def test_login__escapes_the_next_parameter(client: Client) -> None:
    target = f'/"{EVIL}'
    html = client.get("/accounts/login/", {"next": target}).content.decode()
    assert EVIL not in html
    # Rendered, and escaped, in the form's hidden field (absent would also pass the line above).
    assert f'name="next" value="{escape(target)}"' in html


def test_admin__escapes_names_and_tracebacks(admin_client: Client, evil_job) -> None:
    job, failure = evil_job
    name, error_type = f"name {EVIL}", f"Err{EVIL}"
    message, traceback = f"message {EVIL}", f"Traceback {EVIL}"
    actor, detail = f"actor {EVIL}", f"detail {EVIL}"
    # Each page, with the values it must show: absent values would pass the raw-string check too.
    pages = {
        "/admin/reindexer/reindexjob/": [name],
        f"/admin/reindexer/reindexjob/{job.pk}/change/": [name, error_type, message, actor, detail],
        "/admin/reindexer/batchfailure/": [error_type, message],
        f"/admin/reindexer/batchfailure/{failure.pk}/change/": [error_type, message, traceback],
        "/admin/reindexer/jobevent/": [actor, detail],
    }
    for url, values in pages.items():
        html = admin_client.get(url).content.decode()
        assert EVIL not in html, url
        assert "<script>alert" not in html, url
        for value in values:
            assert escape(value) in html, (url, value)


def test_username__is_escaped(client: Client) -> None:
    user = User.objects.create_user(f"u{EVIL}"[:150], password="pw")
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client.force_login(user)
    _assert_escaped(client.get("/").content.decode())
