"""POST /api/jobs/<id>/throttle/: set, change and lift a job's rate limit; what is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from reindexer.models import EventKind, JobEvent, JobStatus, ReindexJob
from tests.api.conftest import Api
from tests.api.test_auth import CSRF_SECRET, session_client
from tests.api.test_jobs import error_of, field_errors
from tests.dashboard.slices import sliced_job

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]


def throttle_events(job: ReindexJob) -> list[tuple[str, str]]:
    rows = JobEvent.objects.filter(job=job, kind=EventKind.THROTTLED).order_by("at", "id")
    return [(e.actor, e.detail) for e in rows]


def url(job: ReindexJob) -> str:
    return f"/api/jobs/{job.pk}/throttle/"


def test_throttle__sets_changes_and_lifts_the_limit(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING)

    set_ = as_operator.post(url(job), {"max_docs_per_second": 200})
    assert set_.status_code == 200
    body = set_.json()
    assert (body["id"], body["status"], body["max_docs_per_second"]) == (job.pk, "running", 200)
    assert (body["changed"], body["message"]) == (True, f"job {job.pk}: limit set to 200 docs/s")

    changed = as_operator.post(url(job), {"max_docs_per_second": 50.5}).json()
    assert changed["max_docs_per_second"] == 50.5
    lifted = as_operator.post(url(job), {"max_docs_per_second": 0}).json()
    assert lifted["max_docs_per_second"] is None

    job.refresh_from_db()
    assert job.max_docs_per_second is None
    assert throttle_events(job) == [
        ("operator", "limit set to 200 docs/s"),
        ("operator", "limit changed from 200 to 50.5 docs/s"),
        ("operator", "limit lifted"),
    ]


def test_throttle__answers_the_status_fields(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job()
    body = as_operator.post(url(job), {"max_docs_per_second": 10}).json()
    shown = as_operator.get(f"/api/jobs/{job.pk}/").json()
    assert set(body) == set(shown) | {"changed", "message"}
    assert shown["max_docs_per_second"] == 10


def test_throttle__null_lifts_too(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job(max_docs_per_second=30)
    body = as_operator.post(url(job), {"max_docs_per_second": None}).json()
    assert (body["max_docs_per_second"], body["changed"]) == (None, True)
    assert throttle_events(job) == [("operator", "limit lifted")]


def test_throttle__the_same_limit_again_changes_and_logs_nothing(
    as_operator: Api, make_job: MakeJob
) -> None:
    job = make_job(max_docs_per_second=200)
    before = ReindexJob.objects.get(pk=job.pk).updated_at
    body = as_operator.post(url(job), {"max_docs_per_second": 200.0}).json()
    assert body["changed"] is False
    assert "already 200 docs/s; nothing changed" in body["message"]
    assert ReindexJob.objects.get(pk=job.pk).updated_at == before
    lifted_twice = as_operator.post(url(make_job()), {"max_docs_per_second": 0}).json()
    assert (
        lifted_twice["changed"],
        lifted_twice["message"].endswith("no limit already; nothing changed"),
    ) == (False, True)
    assert throttle_events(job) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"max_docs_per_second": -1}', "between 0 and 1,000,000 documents per second"),
        ('{"max_docs_per_second": "abc"}', "must be a number"),
        ('{"max_docs_per_second": 1e9}', "got 1e+09"),
        ('{"max_docs_per_second": NaN}', "must be a finite number, got nan"),
        ('{"max_docs_per_second": Infinity}', "must be a finite number, got inf"),
        ('{"max_docs_per_second": "NaN"}', "must be a number"),
        ('{"max_docs_per_second": true}', "must be a number"),
        ('{"max_docs_per_second": [1]}', "must be a number"),
    ],
)
def test_throttle__refuses_a_bad_rate_with_400(
    as_operator: Api, make_job: MakeJob, raw: str, expected: str
) -> None:
    job = make_job(max_docs_per_second=100)
    response = as_operator.post(url(job), raw=raw)
    assert response.status_code == 400
    assert expected in error_of(response)
    assert [field for field, _ in field_errors(response)] == ["max_docs_per_second"]
    job.refresh_from_db()
    assert job.max_docs_per_second == 100
    assert throttle_events(job) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{}", "max_docs_per_second is required"),
        ('{"rate": 5}', "unknown field(s): rate"),
        ("[5]", "the request body must be a JSON object"),
        ("not json", "the request body must be a JSON object"),
    ],
)
def test_throttle__refuses_a_bad_body_with_400(
    as_operator: Api, make_job: MakeJob, raw: str, expected: str
) -> None:
    response = as_operator.post(url(make_job()), raw=raw)
    assert response.status_code == 400
    assert expected in error_of(response)


def test_throttle__of_a_finished_job_is_409(as_operator: Api, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED)
    response = as_operator.post(url(job), {"max_docs_per_second": 5})
    assert response.status_code == 409
    assert "is completed: only a pending or running job's rate limit" in error_of(response)
    assert throttle_events(job) == []


def test_throttle__unknown_job_is_404(as_operator: Api) -> None:
    response = as_operator.post("/api/jobs/999999/throttle/", {"max_docs_per_second": 5})
    assert response.status_code == 404
    assert "no job with id 999999" in error_of(response)


def test_throttle__a_viewer_is_403(as_viewer: Api, make_job: MakeJob) -> None:
    job = make_job()
    assert as_viewer.post(url(job), {"max_docs_per_second": 5}).status_code == 403
    job.refresh_from_db()
    assert job.max_docs_per_second is None


def test_throttle__anonymous_is_401(anonymous: Api, make_job: MakeJob) -> None:
    assert anonymous.post(url(make_job()), {"max_docs_per_second": 5}).status_code == 401


def test_throttle__a_session_without_csrf_is_403(operator: User, make_job: MakeJob) -> None:
    job = make_job()
    response = Api(session_client(operator, csrf=False)).post(url(job), {"max_docs_per_second": 5})
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.max_docs_per_second is None
    with_csrf = Api(session_client(operator, csrf=True), {"X-CSRFToken": CSRF_SECRET})
    assert with_csrf.post(url(job), {"max_docs_per_second": 5}).status_code == 200


def test_throttle__by_bearer_token_without_csrf(by_token: Api, make_job: MakeJob) -> None:
    job = make_job()
    assert by_token.post(url(job), {"max_docs_per_second": 7}).json()["max_docs_per_second"] == 7


def test_throttle__of_a_slice_sets_its_sliced_jobs_limit(
    as_operator: Api, make_job: MakeJob
) -> None:
    job, slices = sliced_job(make_job)
    body = as_operator.post(url(slices[1]), {"max_docs_per_second": 40}).json()
    assert (body["id"], body["slice_of"]) == (slices[1].pk, job.pk)
    assert body["message"] == f"job {job.pk}: limit set to 40 docs/s"
    job.refresh_from_db()
    assert job.max_docs_per_second == 40
    assert throttle_events(job) == [("operator", "limit set to 40 docs/s")]


def test_schema__documents_the_throttle(as_viewer: Api) -> None:
    schema: dict[str, Any] = as_viewer.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/jobs/{job_id}/throttle/"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    spec = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    rate = spec["properties"]["max_docs_per_second"]
    assert {"type": "number", "minimum": 0, "maximum": 1_000_000} in rate["anyOf"]
    assert {"type": "null"} in rate["anyOf"]
    assert spec["required"] == ["max_docs_per_second"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    job = schema["components"]["schemas"][answer.rsplit("/", 1)[-1]]
    assert {"changed", "message", "max_docs_per_second", "status"} <= set(job["properties"])
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "409"}
