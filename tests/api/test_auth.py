"""Who may call the API: sessions with CSRF, bearer tokens without it, and the token lifecycle."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory

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


@pytest.mark.parametrize("given", ["rxk_", "rxk", "", "rxk_…", "rxk_...", "abcdefgh"])
def test_api_token_command__revoke_needs_more_than_the_fixed_prefix(
    operator: User, given: str
) -> None:
    ApiToken.issue(operator, "one")
    ApiToken.issue(operator, "two")
    with pytest.raises(CommandError, match="needs the token's prefix") as caught:
        call_command("api_token", "operator", "--revoke", given)
    assert "\n" not in str(caught.value)
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


def test_api_token_command__revoke_refuses_a_prefix_shared_by_several_tokens(
    operator: User, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = ApiToken.issue(operator, "one")
    second, _ = ApiToken.issue(operator, "two")
    # Keys are random; give both the same shown prefix so that a short prefix is ambiguous.
    ApiToken.objects.filter(pk=first.pk).update(prefix="rxk_AAAA1111")
    ApiToken.objects.filter(pk=second.pk).update(prefix="rxk_AAAA2222")
    with pytest.raises(CommandError, match="matches 2 active tokens"):
        call_command("api_token", "operator", "--revoke", "rxk_AAAA")
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()

    call_command("api_token", "operator", "--revoke", "rxk_AAAA2222…")
    assert "revoked 1 token" in capsys.readouterr().out
    assert set(ApiToken.objects.filter(revoked_at__isnull=False)) == {second}


@pytest.mark.django_db(transaction=True)  # the command runs in another process
def test_api_token_command__revoke_error_exits_1_with_one_line(
    operator: User, manage: list[str], worker_env: dict[str, str]
) -> None:
    ApiToken.issue(operator)
    result = subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [*manage, "api_token", "operator", "--revoke", "rxk_"],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "needs the token's prefix" in result.stderr
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


# -- the admin --------------------------------------------------------------------------------


def add_token(client: Client, user: User, **extra: Any) -> Any:
    return client.post("/admin/dashboard/apitoken/add/", {"user": user.pk, "name": "x", **extra})


def shown_key(response: Any) -> str:
    (raw,) = re.findall(r'<code id="new-api-token">(rxk_[^<]+)</code>', response.content.decode())
    return str(raw)


@pytest.fixture
def token_clerk(db: None) -> User:
    """Staff (not superuser) who may add and see API tokens."""
    clerk = User.objects.create_user("clerk", password="pw-clerk", is_staff=True)
    for codename in ("add_apitoken", "view_apitoken", "change_apitoken"):
        clerk.user_permissions.add(Permission.objects.get(codename=codename))
    return clerk


def test_admin__adding_a_token_shows_its_key_once_on_the_response_page(
    admin_client: Client, operator: User
) -> None:
    response = add_token(admin_client, operator)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = shown_key(response)
    token = ApiToken.objects.get()
    assert token.user == operator
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert Api(Client(), bearer(raw)).get("/api/jobs/").status_code == 200
    # Not in a message, a cookie or the session: the next page knows nothing of it.
    assert not list(get_messages(response.wsgi_request))
    assert all(raw not in morsel.value for morsel in admin_client.cookies.values())
    assert raw not in str(dict(admin_client.session))
    assert raw not in admin_client.get("/admin/dashboard/apitoken/").content.decode()


def test_admin__staff_user_may_issue_a_token_for_themselves_only(
    token_clerk: User, operator: User, admin_user: User
) -> None:
    client = Client()
    client.force_login(token_clerk)
    form = client.get("/admin/dashboard/apitoken/add/").content.decode()
    assert f'<option value="{token_clerk.pk}"' in form
    for other in (admin_user, operator):
        assert f'<option value="{other.pk}"' not in form
        response = add_token(client, other)
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
        assert "new-api-token" not in response.content.decode()
    assert not ApiToken.objects.exists()

    response = add_token(client, token_clerk)
    assert ApiToken.objects.get().user == token_clerk
    shown_key(response)


def test_admin__non_superuser_is_refused_even_past_the_form(
    rf: RequestFactory, token_clerk: User, admin_user: User
) -> None:
    """save_model re-checks, so a future form change cannot reopen the escalation."""
    request = rf.post("/admin/dashboard/apitoken/add/")
    request.user = token_clerk
    model_admin = admin.site._registry[ApiToken]
    with pytest.raises(PermissionDenied):
        model_admin.save_model(request, ApiToken(user=admin_user), form=None, change=False)
    assert not ApiToken.objects.exists()


def test_admin__revoke_action(admin_client: Client, operator_token: str) -> None:
    token = ApiToken.objects.get()
    admin_client.post(
        "/admin/dashboard/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    token.refresh_from_db()
    assert token.is_revoked
    assert Api(Client(), bearer(operator_token)).get("/api/jobs/").status_code == 401
