"""GET /api/openapi.json and /api/docs: behind login, no CDN, and schemas from the one spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.api_schemas import JobOut
from reindexer.models import ReindexJob
from reindexer.presenter import present
from reindexer.specs import JobSpec
from tests.api.conftest import Api
from tests.api.test_jobs import error_of

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("get", "/api/jobs/"),
    ("post", "/api/jobs/"),
    ("get", "/api/jobs/{job_id}/"),
    ("post", "/api/jobs/{job_id}/cancel/"),
    ("post", "/api/jobs/{job_id}/resume/"),
    ("post", "/api/jobs/{job_id}/retry-failed/"),
    ("post", "/api/jobs/{job_id}/throttle/"),
    ("get", "/api/jobs/{job_id}/failures/"),
    ("post", "/api/jobs/{job_id}/approve/"),
    ("post", "/api/jobs/{job_id}/discard/"),
    ("get", "/api/aliases/"),
    ("post", "/api/aliases/rollback/"),
    ("post", "/api/aliases/prune/"),
}


@pytest.fixture
def schema(as_viewer: Api) -> dict[str, Any]:
    response = as_viewer.get("/api/openapi.json")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body: dict[str, Any] = response.json()
    return body


def test_job_out__has_exactly_the_presenters_fields(make_job: Callable[..., ReindexJob]) -> None:
    job = make_job()
    assert set(JobOut.model_fields) == set(present(job).as_status())
    JobOut.model_validate(job)


def test_schema__is_openapi_3_with_every_operation(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    documented = {(m, path) for path, ops in schema["paths"].items() for m in ops}
    assert documented == OPERATIONS


def test_schema__create_takes_the_job_spec_with_its_bounds(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/jobs/"]["post"]["requestBody"]["content"]["application/json"]
    spec = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    expected = JobSpec.model_json_schema()
    # django-ninja leaves out a default of null; an absent default means the same to a client.
    for field in expected["properties"].values():
        if "default" in field and field["default"] is None:
            del field["default"]
    assert spec == expected
    assert spec["properties"]["batch_size"]["maximum"] == 10_000
    job = schema["components"]["schemas"]["Job"]
    assert set(job["required"]) == set(job["properties"]) >= set(JobSpec.model_fields)
    assert job["properties"]["source"]["maxLength"] == spec["properties"]["source"]["maxLength"]


def test_schema__anonymous_gets_401_json(anonymous: Api) -> None:
    response = anonymous.get("/api/openapi.json")
    assert response.status_code == 401
    assert "authentication required" in error_of(response)
    assert response["WWW-Authenticate"] == "Bearer"


def test_schema__needs_the_view_permission(client: Client) -> None:
    client.force_login(User.objects.create_user("nobody", password="pw"))
    response = client.get("/api/openapi.json")
    assert response.status_code == 403
    assert "reindexer.view_reindexjob" in error_of(response)


def test_schema__by_bearer_token(by_token: Api) -> None:
    assert by_token.get("/api/openapi.json").status_code == 200


def test_docs__anonymous_is_sent_to_the_login_page(anonymous: Api) -> None:
    response = anonymous.get("/api/docs")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs"


def test_docs__serve_swagger_from_our_static_files_not_a_cdn(as_viewer: Api) -> None:
    response = as_viewer.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert '"url": "/api/openapi.json"' in html
    assert "//cdn" not in html and "https://" not in html
    for path in ["/static/ninja/swagger-ui-bundle.js", "/static/ninja/swagger-ui.css"]:
        assert path in html
        assert as_viewer.client.get(path).status_code == 200
