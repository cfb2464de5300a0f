"""The "New job" form: sources listed, jobs created through create_job, errors inline."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from dashboard.forms import available_sources
from reindexer.models import EventKind, ReindexJob

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "source": "jsonl:docs.jsonl",
        "embedder": "hashing",
        "store": "sqlite-vec",
        "collection": "default",
        "batch_size": 100,
        "max_retries": 2,
        "max_failed_ratio": 0.1,
        "name": "from the form",
    }
    data.update(overrides)
    return data


def test_sources__lists_jsonl_files_and_text_folders_in_the_roots(
    data_dir: Path, corpus: Path
) -> None:
    (data_dir / "notes" / "deep").mkdir(parents=True)
    (data_dir / "notes" / "a.md").write_text("hello")
    (data_dir / "empty").mkdir()
    (data_dir / ".hidden").mkdir()
    (data_dir / ".hidden" / "x.jsonl").write_text("{}")
    (data_dir / "link.jsonl").symlink_to(corpus)
    assert available_sources() == ["jsonl:docs.jsonl", "directory:notes"]


def test_new_job_page__offers_the_sources(operator_client: Client, corpus: Path) -> None:
    response = operator_client.get("/jobs/new/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<datalist id="source-choices"><option value="jsonl:docs.jsonl">' in html
    for field in ["source", "embedder", "store", "collection", "batch_size", "max_retries", "name"]:
        assert f'name="{field}"' in html


def test_list_page__embeds_the_form_for_operators(operator_client: Client, corpus: Path) -> None:
    html = operator_client.get("/").content.decode()
    assert 'id="new-job-form"' in html
    assert 'hx-post="/jobs/create/"' in html


def test_create__valid_form_queues_a_job_and_redirects(
    operator_client: Client, operator, corpus
) -> None:
    response = operator_client.post("/jobs/create/", _form())
    job = ReindexJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert (job.name, job.source, job.batch_size, job.max_retries) == (
        "from the form",
        "jsonl:docs.jsonl",
        100,
        2,
    )
    assert job.created_by == operator
    assert job.events.get().kind == EventKind.CREATED
    assert job.events.get().actor == "operator"


def test_create__htmx_returns_a_fresh_form_and_the_new_row(operator_client: Client, corpus) -> None:
    response = operator_client.post("/jobs/create/", _form(name=""), headers=HTMX)
    job = ReindexJob.objects.get()
    assert response.status_code == 201
    html = response.content.decode()
    assert html.startswith('<form id="new-job-form"')
    # In a <template>, so that the parser keeps the row after the <form>.
    assert '<template><tbody hx-swap-oob="afterbegin:#job-rows">' in html
    assert f'<tr id="job-row-{job.pk}"' in html
    assert 'id="flash" class="flash-area" aria-live="polite" hx-swap-oob="true"' in html
    assert job.name == "jsonl:docs.jsonl"  # the name defaults to the source


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"batch_size": 0}, "batch_size", "batch size must be between 1 and 10000"),
        ({"batch_size": 10_001}, "batch_size", "batch size must be between 1 and 10000"),
        ({"max_retries": 99}, "max_retries", "max retries must be between 0 and 20"),
        ({"store": "nosuchstore"}, "store", "unknown store"),
        ({"store": "flaky(sqlite-vec,transient=2)"}, "store", "between 0 and 1"),
        ({"embedder": "nope"}, "embedder", "unknown embedder"),
        ({"collection": "bad name!"}, "collection", "must be 1-64 letters"),
        ({"source": "jsonl:/etc/passwd"}, "source", "outside the allowed roots"),
        ({"source": "jsonl:../outside.jsonl"}, "source", "must not contain"),
        ({"source": "jsonl:missing.jsonl"}, "source", "not found"),
        ({"source": "csv:docs.csv"}, "source", "unknown source kind"),
        ({"batch_size": "many"}, "batch_size", "Enter a whole number"),
    ],
)
def test_create__invalid_input_shows_inline_errors_and_creates_nothing(
    operator_client: Client, corpus, overrides, field, message
) -> None:
    response = operator_client.post("/jobs/create/", _form(**overrides))
    assert response.status_code == 422
    assert ReindexJob.objects.count() == 0
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in errors[field][0]
    html = response.content.decode()
    assert 'class="field-error"' in html
    assert f"field-{field} has-error" in html


def test_create__htmx_invalid_returns_only_the_form(operator_client: Client, corpus) -> None:
    response = operator_client.post("/jobs/create/", _form(batch_size=0), headers=HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.startswith('<form id="new-job-form"')
    assert "batch size must be between 1 and 10000, got 0" in html
    assert ReindexJob.objects.count() == 0


def test_create__required_fields(operator_client: Client, corpus) -> None:
    response = operator_client.post("/jobs/create/", {})
    assert response.status_code == 422
    assert set(response.context["form"].errors) >= {"source", "batch_size", "max_retries"}
    assert ReindexJob.objects.count() == 0


def test_create__reports_every_wrong_field_at_once(operator_client: Client, corpus) -> None:
    response = operator_client.post(
        "/jobs/create/",
        _form(batch_size=0, max_retries=99, store="nope", source="jsonl:../x.jsonl"),
    )
    assert response.status_code == 422
    errors = response.context["form"].errors
    assert set(errors) == {"batch_size", "max_retries", "store", "source"}
    assert ReindexJob.objects.count() == 0
