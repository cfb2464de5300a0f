"""Who may call the API: sessions with CSRF, bearer tokens without it, and the token lifecycle."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from dashboard.models import ApiToken
from reindexer.models import JobStatus, ReindexJob
from tests.api.conftest import Api, bearer
from tests.api.test_jobs import error_of

pytestmark = pytest.mark.django_db

CSRF_SECRET = "A" * 32  # any 32 alphanumerics make a valid unmasked CSRF cookie and token


def session_client(user: User, *, csrf: bool) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf:
        client.cookies["csrftoken"] = CSRF_SECRET
    return client


# -- sessions and CSRF ------------------------------------------------------------------------


def test_session_post_without_csrf_token_is_403(operator: User, corpus: str) -> None:
    api = Api(session_client(operator, csrf=False))
    response = api.post("/api/jobs/", {"source": corpus})
    assert response.status_code == 403
    assert "CSRF verification failed" in error_of(response)
    assert not ReindexJob.objects.exists()


def test_session_post_with_a_wrong_csrf_token_is_403(operator: User, corpus: str) -> None:
    api = Api(session_client(operator, csrf=True), {"X-CSRFToken": "B" * 32})
    assert api.post("/api/jobs/", {"source": corpus}).status_code == 403
    assert not ReindexJob.objects.exists()


def test_session_post_with_csrf_token_is_accepted(operator: User, corpus: str) -> None:
    api = Api(session_client(operator, csrf=True), {"X-CSRFToken": CSRF_SECRET})
    assert api.post("/api/jobs/", {"source": corpus}).status_code == 201


def test_session_cancel_without_csrf_token_is_403(
    operator: User, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    response = Api(session_client(operator, csrf=False)).post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_session_get_needs_no_csrf_token(viewer: User) -> None:
    assert Api(session_client(viewer, csrf=False)).get("/api/jobs/").status_code == 200


# -- bearer tokens ----------------------------------------------------------------------------


def test_token__reads_and_creates_without_csrf(
    by_token: Api, corpus: str, operator: User, operator_token: str
) -> None:
    assert by_token.get("/api/jobs/").status_code == 200
    response = by_token.post("/api/jobs/", {"source": corpus})

    assert response.status_code == 201
    assert ReindexJob.objects.get().created_by == operator
    assert "sessionid" not in response.cookies
    assert "csrftoken" not in response.cookies
    token = ApiToken.objects.get()
    assert token.last_used_at is not None


def test_token__is_stored_only_as_its_sha256(operator_token: str) -> None:
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(operator_token.encode()).hexdigest()
    stored = [str(value) for value in ApiToken.objects.values().get().values()]
    assert operator_token not in stored
    assert operator_token.startswith(token.prefix) and len(token.prefix) < len(operator_token)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer rxk_not-a-real-token",
        "Bearer not-even-our-format",
        "Bearer ",
        "Bearer",
        "Bearer two words",
        "bearer " + "x" * 5000,
    ],
)
def test_token__invalid_bearer_is_401(header: str, corpus: str) -> None:
    api = Api(Client(enforce_csrf_checks=True), {"Authorization": header})
    for response in [api.get("/api/jobs/"), api.post("/api/jobs/", {"source": corpus})]:
        assert response.status_code == 401
        assert "token" in error_of(response)
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert not ReindexJob.objects.exists()


def test_token__revoked_is_401(by_token: Api) -> None:
    ApiToken.objects.get().revoke()
    response = by_token.get("/api/jobs/")
    assert response.status_code == 401
    assert "invalid or revoked" in error_of(response)


def test_token__of_an_inactive_user_is_401(by_token: Api, operator: User) -> None:
    operator.is_active = False
    operator.save()
    assert by_token.get("/api/jobs/").status_code == 401


def test_token__of_a_viewer_may_read_but_not_operate(viewer: User, corpus: str) -> None:
    api = Api(Client(enforce_csrf_checks=True), bearer(ApiToken.issue(viewer)[1]))
    assert api.get("/api/jobs/").status_code == 200
    response = api.post("/api/jobs/", {"source": corpus})
    assert response.status_code == 403
    assert "permission" in error_of(response)


def test_token__decides_the_caller_even_with_a_session(
    operator: User, viewer: User, corpus: str, operator_token: str
) -> None:
    """A bearer request never uses the session: neither its user nor a fallback to it."""
    as_viewer_with_operator_token = Api(session_client(viewer, csrf=False), bearer(operator_token))
    assert as_viewer_with_operator_token.post("/api/jobs/", {"source": corpus}).status_code == 201

    viewer_token = ApiToken.issue(viewer)[1]
    as_operator_with_viewer_token = Api(session_client(operator, csrf=False), bearer(viewer_token))
    assert as_operator_with_viewer_token.post("/api/jobs/", {"source": corpus}).status_code == 403

    as_operator_with_bad_token = Api(session_client(operator, csrf=False), bearer("rxk_wrong"))
    assert as_operator_with_bad_token.get("/api/jobs/").status_code == 401
    assert ReindexJob.objects.count() == 1


def test_other_authorization_schemes_are_ignored(viewer: User) -> None:
    """A proxy's Basic auth is not ours: the session decides, and without one it is 401."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert Api(Client(), basic).get("/api/jobs/").status_code == 401
    assert Api(session_client(viewer, csrf=False), basic).get("/api/jobs/").status_code == 200


def test_unknown_path_post_without_csrf_is_json_404(operator: User) -> None:
    response = Api(session_client(operator, csrf=False)).post("/api/nope/")
    assert response.status_code == 404
    assert "no API endpoint" in error_of(response)


def test_responses_are_not_cached(as_viewer: Api, anonymous: Api) -> None:
    for response in [as_viewer.get("/api/jobs/"), anonymous.get("/api/jobs/")]:
        assert "no-store" in response["Cache-Control"]


# -- issuing tokens ---------------------------------------------------------------------------


def test_api_token_command__prints_a_working_token_once(
    operator: User, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("api_token", "operator", "--name", "ci")
    out, err = capsys.readouterr()
    raw = out.strip()
    assert raw.startswith("rxk_") and "\n" not in raw
    assert "cannot be shown again" in err
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (operator, "ci")
    assert Api(Client(), bearer(raw)).get("/api/jobs/").status_code == 200

    call_command("api_token", "operator", "--list")
    listing = capsys.readouterr().out
    assert token.prefix in listing and "active" in listing and raw not in listing

    call_command("api_token", "operator", "--revoke", token.prefix)
    assert "revoked 1 token" in capsys.readouterr().out
    assert Api(Client(), bearer(raw)).get("/api/jobs/").status_code == 401


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["operator", "--revoke", "rxk_nothing"], "no active token"),
    ],
)
def test_api_token_command__errors(operator: User, argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("api_token", *argv)
    assert not ApiToken.objects.exists()


def test_admin__adding_a_token_shows_its_key_once(admin_client: Client, operator: User) -> None:
    response = admin_client.post(
        "/admin/dashboard/apitoken/add/", {"user": operator.pk, "name": "from admin"}, follow=True
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    shown: list[Any] = [str(m) for m in response.context["messages"]]
    (raw,) = [word for m in shown for word in m.split() if word.startswith("rxk_")]
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert Api(Client(), bearer(raw)).get("/api/jobs/").status_code == 200


def test_admin__revoke_action(admin_client: Client, operator_token: str) -> None:
    token = ApiToken.objects.get()
    admin_client.post(
        "/admin/dashboard/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.is_revoked
    assert Api(Client(), bearer(operator_token)).get("/api/jobs/").status_code == 401
