"""GET and POST /api/jobs/, GET /api/jobs/<id>/: shapes, filters, pagination, validation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reindexer.models import EventKind, JobEvent, JobStatus, ReindexJob
from reindexer.presenter import job_status
from tests.api.conftest import Api, force_status
from tests.contracts import STATUS_FIELDS

pytestmark = pytest.mark.django_db

PAGE_KEYS = {"count", "page", "pages", "next", "previous", "results"}


def error_of(response: Any) -> str:
    """The error's message; the body holds it, and for invalid input the list of every invalid
    field (each with its message), which the message then joins."""
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) <= {"error", "errors"} and body["error"]
    if "errors" in body:
        problems = body["errors"]
        assert response.status_code == 400 and problems
        assert all(set(p) == {"field", "message"} and p["message"] for p in problems)
        assert body["error"] == "; ".join(p["message"] for p in problems)
    return str(body["error"])


def field_errors(response: Any) -> list[tuple[str | None, str]]:
    """Every invalid field the answer lists, with its message."""
    error_of(response)
    return [(p["field"], p["message"]) for p in response.json().get("errors", [])]


def without_clock(status: dict[str, Any]) -> dict[str, Any]:
    """A job's status without the fields that move with the clock between two reads."""
    return {k: v for k, v in status.items() if k not in {"heartbeat_age_seconds", "eta_seconds"}}


# -- list -------------------------------------------------------------------------------------


def test_list__anonymous_gets_401_json(anonymous: Api) -> None:
    response = anonymous.get("/api/jobs/")
    assert response.status_code == 401
    assert "authentication required" in error_of(response)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_list__viewer_sees_every_job_with_the_status_json_fields(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    older, newer = make_job(name="older"), make_job(name="newer")

    response = as_viewer.get("/api/jobs/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == PAGE_KEYS
    assert (body["count"], body["page"], body["pages"]) == (2, 1, 1)
    assert body["next"] is None and body["previous"] is None
    assert [job["id"] for job in body["results"]] == [newer.pk, older.pk]
    for job, result in zip([newer, older], body["results"], strict=True):
        assert set(result) >= STATUS_FIELDS
        assert without_clock(result) == without_clock(job_status(job))


def test_list__empty(as_viewer: Api) -> None:
    body = as_viewer.get("/api/jobs/").json()
    assert (body["count"], body["page"], body["pages"], body["results"]) == (0, 1, 1, [])


def test_list__filters_by_status(as_viewer: Api, make_job: Callable[..., ReindexJob]) -> None:
    pending = make_job()
    cancelled = force_status(make_job(), JobStatus.CANCELLED)
    completed = force_status(make_job(), JobStatus.COMPLETED)

    def ids(**params: str) -> list[int]:
        response = as_viewer.get("/api/jobs/", **params)
        assert response.status_code == 200
        return [job["id"] for job in response.json()["results"]]

    assert ids(status="pending") == [pending.pk]
    assert ids(status="cancelled") == [cancelled.pk]
    assert ids(status="completed,cancelled") == [completed.pk, cancelled.pk]
    assert ids(status="running") == []
    assert ids(status="") == [completed.pk, cancelled.pk, pending.pk]


def test_list__unknown_status_is_400(as_viewer: Api) -> None:
    response = as_viewer.get("/api/jobs/", status="done")
    assert response.status_code == 400
    assert "unknown status done" in error_of(response)


def test_list__every_invalid_query_parameter_is_reported(as_viewer: Api) -> None:
    response = as_viewer.get("/api/jobs/", page="0", page_size="two")
    assert response.status_code == 400
    assert field_errors(response) == [
        ("page", "page must be between 1 and 1000000000, got 0"),
        ("page_size", "page_size must be a whole number, got 'two'"),
    ]


def test_list__unknown_status_names_the_status_parameter(as_viewer: Api) -> None:
    problems = field_errors(as_viewer.get("/api/jobs/", status="done,running,nope"))
    assert [field for field, _ in problems] == ["status"]
    assert "unknown status done, nope" in problems[0][1]


def test_list__paginates_and_links_keep_the_filter(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    jobs = [make_job(name=f"job {i}") for i in range(5)]
    force_status(make_job(name="not pending"), JobStatus.CANCELLED)
    newest_first = [job.pk for job in reversed(jobs)]

    first = as_viewer.get("/api/jobs/", status="pending", page_size="2").json()
    assert (first["count"], first["page"], first["pages"]) == (5, 1, 3)
    assert [j["id"] for j in first["results"]] == newest_first[:2]
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/jobs/?")
    assert "status=pending" in first["next"] and "page=2" in first["next"]

    second = as_viewer.client.get(first["next"]).json()
    assert second["page"] == 2
    assert [j["id"] for j in second["results"]] == newest_first[2:4]
    assert "page=1" in second["previous"] and "page=3" in second["next"]

    last = as_viewer.get("/api/jobs/", status="pending", page_size="2", page="3").json()
    assert [j["id"] for j in last["results"]] == newest_first[4:]
    assert last["next"] is None


def test_list__default_page_size_is_bounded(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    for _ in range(51):
        make_job()
    body = as_viewer.get("/api/jobs/").json()
    assert (body["count"], body["pages"], len(body["results"])) == (51, 2, 50)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"page": "0"}, 400, "page must be between 1"),
        ({"page": "two"}, 400, "page must be a whole number"),
        ({"page_size": "0"}, 400, "page_size must be between 1 and 200"),
        ({"page_size": "201"}, 400, "page_size must be between 1 and 200"),
        ({"page": "2"}, 404, "page 2 does not exist"),
    ],
)
def test_list__bad_page_parameters(
    as_viewer: Api, params: dict[str, str], status: int, message: str
) -> None:
    response = as_viewer.get("/api/jobs/", **params)
    assert response.status_code == status
    assert message in error_of(response)


# -- detail -----------------------------------------------------------------------------------


def test_detail__returns_the_status_json_fields(
    as_viewer: Api, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(name="one")
    response = as_viewer.get(f"/api/jobs/{job.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= STATUS_FIELDS
    assert without_clock(body) == without_clock(job_status(job))


def test_detail__unknown_job_is_404(as_viewer: Api) -> None:
    response = as_viewer.get("/api/jobs/999999/")
    assert response.status_code == 404
    assert error_of(response) == "no job with id 999999"


def test_detail__anonymous_gets_401_not_404(anonymous: Api) -> None:
    assert anonymous.get("/api/jobs/999999/").status_code == 401


@pytest.mark.parametrize(
    "path", ["/api/", "/api/jobs/abc/", "/api/nothing/", "/api/jobs/1/nope/", "/api/a/b/"]
)
def test_unknown_api_paths_are_json_404(as_viewer: Api, path: str) -> None:
    response = as_viewer.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "no API endpoint" in error_of(response)


def test_api_root__is_json_404_for_anyone(anonymous: Api) -> None:
    response = anonymous.get("/api/")
    assert response.status_code == 404
    assert error_of(response) == "no API endpoint at /api/"


def test_api_path_without_slash__redirects_to_the_json_404(as_viewer: Api) -> None:
    response = as_viewer.get("/api")
    assert response.status_code == 301
    assert response["Location"] == "/api/"


def test_gets_change_nothing(as_viewer: Api, make_job: Callable[..., ReindexJob]) -> None:
    job = make_job()
    before = list(ReindexJob.objects.values()), list(JobEvent.objects.values())
    for path in ["/api/jobs/", f"/api/jobs/{job.pk}/", f"/api/jobs/{job.pk}/failures/"]:
        assert as_viewer.get(path).status_code == 200
    for path in [f"/api/jobs/{job.pk}/cancel/", f"/api/jobs/{job.pk}/retry-failed/"]:
        assert as_viewer.get(path).status_code == 405
    assert (list(ReindexJob.objects.values()), list(JobEvent.objects.values())) == before


# -- create -----------------------------------------------------------------------------------


def test_create__operator_queues_a_job(as_operator: Api, corpus: str, operator: Any) -> None:
    response = as_operator.post(
        "/api/jobs/",
        {
            "source": corpus,
            "embedder": "hashing",
            "store": "sqlite-vec",
            "collection": "docs_v2",
            "batch_size": 50,
            "max_retries": 2,
            "max_failed_ratio": 0.25,
            "name": "nightly",
        },
    )

    assert response.status_code == 201
    body = response.json()
    job = ReindexJob.objects.get()
    assert response["Location"] == f"/api/jobs/{job.pk}/"
    assert without_clock(body) == without_clock(job_status(job))
    assert body["status"] == "pending"
    assert (job.name, job.source, job.collection) == ("nightly", corpus, "docs_v2")
    assert (job.batch_size, job.max_retries, job.max_failed_ratio) == (50, 2, 0.25)
    assert job.created_by == operator
    event = JobEvent.objects.get(job=job)
    assert (event.kind, event.actor) == (EventKind.CREATED, "operator")


def test_create__fills_in_the_defaults(as_operator: Api, corpus: str) -> None:
    response = as_operator.post("/api/jobs/", {"source": corpus})
    assert response.status_code == 201
    job = ReindexJob.objects.get()
    assert (job.embedder, job.store, job.collection) == ("hashing", "sqlite-vec", "default")
    assert (job.batch_size, job.max_retries, job.max_failed_ratio) == (200, 3, 0.1)
    assert job.name == corpus


def test_create__viewer_is_403_and_nothing_is_created(as_viewer: Api, corpus: str) -> None:
    response = as_viewer.post("/api/jobs/", {"source": corpus})
    assert response.status_code == 403
    assert "reindexer.operate_reindexjob" in error_of(response)
    assert not ReindexJob.objects.exists()


def test_create__anonymous_is_401(anonymous: Api, corpus: str) -> None:
    assert anonymous.post("/api/jobs/", {"source": corpus}).status_code == 401
    assert not ReindexJob.objects.exists()


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("not json", "{source:", "must be a JSON object"),
    ("a list", "[1, 2]", "must be a JSON object"),
    ("null", "null", "must be a JSON object"),
    ("empty body", "", "must be a JSON object"),
    ("no source", {}, "source is required"),
    ("unknown field", {"batchsize": 10}, "unknown field(s): batchsize"),
    ("source not a string", {"source": 5}, "source must be a string, got 5"),
    ("batch size as text", {"batch_size": "10"}, 'batch_size must be a whole number, got "10"'),
    ("batch size a float", {"batch_size": 1.5}, "batch_size must be a whole number"),
    ("batch size a bool", {"batch_size": True}, "batch_size must be a whole number, got true"),
    ("batch size null", {"batch_size": None}, "batch_size must be a whole number, got null"),
    ("batch size 0", {"batch_size": 0}, "batch size must be between 1 and 10000, got 0"),
    ("batch size too big", {"batch_size": 10_001}, "batch size must be between 1 and 10000"),
    ("negative retries", {"max_retries": -1}, "max retries must be between 0 and 20"),
    ("ratio as text", {"max_failed_ratio": "0.1"}, "max_failed_ratio must be a number"),
    ("ratio above 1", {"max_failed_ratio": 1.5}, "max failed ratio must be between 0 and 1"),
    ("unknown store", {"store": "redis"}, "unknown store 'redis'"),
    ("bad flaky option", {"store": "flaky(sqlite-vec,transient=2)"}, "flaky: transient"),
    ("unknown embedder", {"embedder": "gpt"}, "unknown embedder 'gpt'"),
    ("bad collection", {"collection": "no spaces"}, "collection 'no spaces' must be"),
    ("name too long", {"name": "n" * 201}, "name must be at most 200 characters"),
    ("outside the roots", {"source": "jsonl:/etc/passwd"}, "outside the allowed roots"),
    ("dot-dot", {"source": "jsonl:../docs.jsonl"}, "must not contain '..'"),
    ("missing file", {"source": "jsonl:missing.jsonl"}, "source file not found"),
    ("unknown source kind", {"source": "csv:docs.csv"}, "unknown source kind 'csv'"),
    ("no kind", {"source": "docs.jsonl"}, "must look like KIND:PATH"),
    ("source too long", {"source": "jsonl:" + "a" * 2000}, "source must be at most 1000"),
    ("file name too long", {"source": "jsonl:" + "a" * 300}, "cannot be used: File name too long"),
]


@pytest.mark.parametrize(
    ("body", "message"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_create__bad_input_is_400_and_creates_nothing(
    as_operator: Api, corpus: str, body: Any, message: str
) -> None:
    if isinstance(body, dict) and body and "source" not in body:
        body = {"source": corpus, **body}
    response = (
        as_operator.post("/api/jobs/", raw=body)
        if isinstance(body, str)
        else (as_operator.post("/api/jobs/", body))
    )
    assert response.status_code == 400
    assert message in error_of(response)
    assert not ReindexJob.objects.exists()
    assert not JobEvent.objects.exists()


def test_create__every_invalid_field_is_reported_with_its_message(
    as_operator: Api, corpus: str
) -> None:
    body = {
        "source": corpus,
        "batch_size": 0,
        "max_retries": -1,
        "max_failed_ratio": 1.5,
        "store": "redis",
        "name": "n" * 201,
    }
    response = as_operator.post("/api/jobs/", body)
    assert response.status_code == 400
    problems = field_errors(response)
    assert sorted(str(field) for field, _ in problems) == [
        "batch_size",
        "max_failed_ratio",
        "max_retries",
        "name",
        "store",
    ]
    messages = dict(problems)
    assert "batch size must be between 1 and 10000, got 0" in messages["batch_size"]
    assert "max retries must be between 0 and 20" in messages["max_retries"]
    assert "max failed ratio must be between 0 and 1" in messages["max_failed_ratio"]
    assert "unknown store 'redis'" in messages["store"]
    assert "name must be at most 200 characters" in messages["name"]
    assert not ReindexJob.objects.exists()


def test_create__one_invalid_field_is_listed_alone(as_operator: Api, corpus: str) -> None:
    response = as_operator.post("/api/jobs/", {"source": corpus, "batch_size": "10"})
    assert field_errors(response) == [("batch_size", 'batch_size must be a whole number, got "10"')]


def test_create__a_body_that_is_not_an_object_names_no_field(as_operator: Api) -> None:
    response = as_operator.post("/api/jobs/", raw="[1, 2]")
    assert response.status_code == 400
    assert field_errors(response) == []
    assert "must be a JSON object" in error_of(response)


def test_create__unnamed_job_with_a_long_source_gets_a_shortened_name(
    as_operator: Api, make_corpus: Callable[..., Path]
) -> None:
    source = "jsonl:" + make_corpus(3, name="c" * 240 + ".jsonl").name
    response = as_operator.post("/api/jobs/", {"source": source})
    assert response.status_code == 201
    job = ReindexJob.objects.get()
    assert (job.source, job.name) == (source, source[:200])


def test_create__non_finite_ratio_is_400(as_operator: Api, corpus: str) -> None:
    raw = json.dumps({"source": corpus}).rstrip("}") + ', "max_failed_ratio": NaN}'
    response = as_operator.post("/api/jobs/", raw=raw)
    assert response.status_code == 400
    assert "max_failed_ratio must be a number" in error_of(response)
    assert not ReindexJob.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("put", "/api/jobs/", "GET, POST"),
        ("delete", "/api/jobs/{id}/", "GET"),
        ("post", "/api/jobs/{id}/", "GET"),
        ("get", "/api/jobs/{id}/cancel/", "POST"),
        ("get", "/api/jobs/{id}/retry-failed/", "POST"),
        ("post", "/api/jobs/{id}/failures/", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(
    as_operator: Api, make_job: Callable[..., ReindexJob], method: str, path: str, allow: str
) -> None:
    job = make_job()
    before = list(ReindexJob.objects.values())
    response = getattr(as_operator.client, method)(path.format(id=job.pk))
    assert response.status_code == 405
    assert response["Allow"] == allow
    assert f"not allowed; use {allow}" in error_of(response)
    assert list(ReindexJob.objects.values()) == before
