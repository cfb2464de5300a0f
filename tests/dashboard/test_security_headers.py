"""Every page carries a Content-Security-Policy of our own origin only, and the usual headers."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
}


def policy_of(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_an_anonymous_page__carries_the_policy(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert policy_of(response["Content-Security-Policy"]) == EXPECTED_POLICY


def test_the_jobs_list__carries_the_policy_and_no_report_only_twin(viewer_client: Client) -> None:
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert policy_of(response["Content-Security-Policy"]) == EXPECTED_POLICY
    assert "Content-Security-Policy-Report-Only" not in response


def test_the_jobs_list__allows_nothing_inline(
    viewer_client: Client,
) -> None:
    policy = policy_of(viewer_client.get("/")["Content-Security-Policy"])
    relaxed = {name for name, values in policy.items() if "'unsafe-inline'" in values}
    assert relaxed == set()
    assert not any("'unsafe-eval'" in values for values in policy.values())


def test_a_page__also_refuses_framing_and_sniffing_and_keeps_the_referrer_home(
    client: Client,
) -> None:
    response = client.get("/accounts/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_htmx_config__turns_off_its_injected_indicator_styles(viewer_client: Client) -> None:
    html = viewer_client.get("/").content.decode()
    assert '"includeIndicatorStyles": false' in html


def test_without_the_https_switch__nothing_redirects_to_https(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response
