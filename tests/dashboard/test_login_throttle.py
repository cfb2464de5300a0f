"""Failed logins are throttled (django-axes) per account and per client address; tokens are not."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client

from dashboard.models import ApiToken
from reindexer.conf import ReindexerSettings
from tests.api.conftest import Api, bearer

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
WRONG_PASSWORD_MESSAGE = "Please enter a correct username and password"
LOCKED_MESSAGE = "Too many failed logins for this account or from this address."


def from_address(address: str, **meta: Any) -> Client:
    """A browser at `address`, sending the extra request META (headers) given."""
    return Client(REMOTE_ADDR=address, **meta)


def log_in(client: Client, username: str, password: str | None = None) -> HttpResponse:
    response = client.post(LOGIN, {"username": username, "password": password or f"pw-{username}"})
    assert isinstance(response, HttpResponse)  # the form, its redirect, or the lock-out page
    return response


def fail_until_locked(client: Client, usernames: list[str]) -> None:
    """One wrong password per name; all but the last are answered by the form, the last locks."""
    statuses = []
    for username in usernames:
        response = log_in(client, username, "not-the-password")
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert WRONG_PASSWORD_MESSAGE in response.content.decode()
    assert statuses == [200] * (len(usernames) - 1) + [429]


def assert_locked_out(response: HttpResponse, client: Client) -> None:
    html = response.content.decode()
    assert response.status_code == 429
    assert LOCKED_MESSAGE in html
    minutes = settings.REINDEXER.login_cooloff_minutes
    assert f"Logins are locked for {minutes} minutes." in html
    assert "css/reindexer.css" in html  # the styled page (base.html), not axes' bare text
    assert "_auth_user_id" not in client.session


def assert_logged_in(response: HttpResponse, client: Client, user: User) -> None:
    assert response.status_code == 302
    assert response["Location"] == settings.LOGIN_REDIRECT_URL
    assert client.session["_auth_user_id"] == str(user.pk)


def limit() -> int:
    failure_limit: int = settings.AXES_FAILURE_LIMIT
    return failure_limit


def test_wrong_passwords_up_to_the_limit__lock_the_account_even_from_another_address(
    operator: User,
) -> None:
    fail_until_locked(from_address("192.0.2.1"), ["operator"] * limit())

    elsewhere = from_address("192.0.2.2")
    assert_locked_out(log_in(elsewhere, "operator"), elsewhere)


def test_wrong_passwords_for_many_names_from_one_address__lock_out_that_address(
    operator: User,
) -> None:
    attacker = from_address("192.0.2.3")
    fail_until_locked(attacker, [f"guess-{i}" for i in range(limit())])

    assert_locked_out(log_in(attacker, "operator"), attacker)


def test_a_locked_account__leaves_other_accounts_at_other_addresses_free_to_log_in(
    operator: User, viewer: User
) -> None:
    fail_until_locked(from_address("192.0.2.4"), ["operator"] * limit())

    other = from_address("192.0.2.5")
    assert_logged_in(log_in(other, "viewer"), other, viewer)
    # Those failures also counted against their address, which is now locked for everyone.
    same_address = from_address("192.0.2.4")
    assert_locked_out(log_in(same_address, "viewer"), same_address)


def test_one_wrong_password_fewer_than_the_limit__still_lets_the_right_one_in(
    operator: User,
) -> None:
    client = from_address("192.0.2.6")
    for _ in range(limit() - 1):
        assert log_in(client, "operator", "not-the-password").status_code == 200

    assert_logged_in(log_in(client, "operator"), client, operator)


def test_a_locked_out_account__is_also_refused_by_the_admin_login(operator: User) -> None:
    operator.is_staff = True
    operator.save()
    fail_until_locked(from_address("192.0.2.7"), ["operator"] * limit())

    admin = from_address("192.0.2.8")
    response = admin.post(
        "/admin/login/", {"username": "operator", "password": "pw-operator", "next": "/admin/"}
    )
    assert isinstance(response, HttpResponse)
    assert_locked_out(response, admin)


def test_a_bearer_token__still_works_for_a_locked_out_account(operator: User) -> None:
    raw = ApiToken.issue(operator, "automation")[1]
    fail_until_locked(from_address("192.0.2.9"), ["operator"] * limit())

    # From the very address that is locked out, too.
    api = Api(Client(REMOTE_ADDR="192.0.2.9", enforce_csrf_checks=True), bearer(raw))
    response = api.get("/api/jobs/")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_a_spoofed_x_forwarded_for__does_not_dodge_the_address_lock_out(operator: User) -> None:
    # No trusted proxy header is configured, so only REMOTE_ADDR counts.
    for i in range(limit()):
        client = from_address("192.0.2.10", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        response = log_in(client, f"guess-{i}", "not-the-password")
    assert response.status_code == 429

    spoofer = from_address("192.0.2.10", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert_locked_out(log_in(spoofer, "operator"), spoofer)


def test_a_configured_proxy_header__tells_clients_behind_one_proxy_apart(
    operator: User, settings
) -> None:
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_REAL_IP", "REMOTE_ADDR")
    attacker = from_address("127.0.0.1", HTTP_X_REAL_IP="198.51.100.1")
    fail_until_locked(attacker, [f"guess-{i}" for i in range(limit())])

    colleague = from_address("127.0.0.1", HTTP_X_REAL_IP="198.51.100.2")
    assert_logged_in(log_in(colleague, "operator"), colleague, operator)


def test_axes_reset__lifts_every_lock_out(operator: User) -> None:
    fail_until_locked(from_address("192.0.2.11"), ["operator"] * limit())

    call_command("axes_reset", verbosity=0)

    client = from_address("192.0.2.11")
    assert_logged_in(log_in(client, "operator"), client, operator)


def test_login_throttle_settings__come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REINDEXER_LOGIN_FAILURE_LIMIT", "3")
    monkeypatch.setenv("REINDEXER_LOGIN_COOLOFF_MINUTES", "45")
    monkeypatch.setenv("REINDEXER_CLIENT_IP_HEADER", "X-Real-IP")
    conf = ReindexerSettings.from_environ()
    assert (conf.login_failure_limit, conf.login_cooloff_minutes) == (3, 45)
    assert conf.client_ip_header == "HTTP_X_REAL_IP"


def test_login_throttle_settings__default_to_five_failures_and_fifteen_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "REINDEXER_LOGIN_FAILURE_LIMIT",
        "REINDEXER_LOGIN_COOLOFF_MINUTES",
        "REINDEXER_CLIENT_IP_HEADER",
    ):
        monkeypatch.delenv(name, raising=False)
    conf = ReindexerSettings.from_environ()
    assert (conf.login_failure_limit, conf.login_cooloff_minutes) == (5, 15)
    assert conf.client_ip_header is None


@pytest.mark.parametrize("value", ["0", "-2", "five"])
def test_a_bad_failure_limit__is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REINDEXER_LOGIN_FAILURE_LIMIT", value)
    with pytest.raises(ValueError, match="REINDEXER_LOGIN_FAILURE_LIMIT"):
        ReindexerSettings.from_environ()
