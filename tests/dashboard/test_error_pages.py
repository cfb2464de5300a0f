"""Styled error pages: each says what happened and links back to the jobs."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client

BACK = '<a class="btn" href="/">Back to the jobs</a>'


def test_settings__debug_is_off_in_tests_so_the_error_templates_render() -> None:
    assert settings.DEBUG is False


@pytest.mark.django_db
def test_404__is_styled_names_the_path_and_links_back(viewer_client: Client) -> None:
    response = viewer_client.get("/jobs/999999/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Not found</h1>" in html
    assert "<code>/jobs/999999/</code>" in html
    assert 'href="/static/css/reindexer.css"' in html
    assert BACK in html


@pytest.mark.django_db
def test_403__a_viewer_on_an_operate_page_is_told_what_permission_it_lacks(
    viewer_client: Client, viewer: User
) -> None:
    response = viewer_client.get("/jobs/new/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "<h1>Not allowed</h1>" in html
    assert f"Your account ({viewer}) lacks the permission this needs." in html
    assert "<strong>operate</strong>" in html
    assert BACK in html


@pytest.mark.django_db
def test_400__a_disallowed_host_gets_the_styled_page(client: Client) -> None:
    response = client.get("/", headers={"host": "not-ours.example"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<h1>Bad request</h1>" in html
    assert "too large" in html
    assert BACK in html


def test_500__renders_without_a_request_or_the_database() -> None:
    # No django_db mark: any query would fail the test, as the database may be what broke.
    html = render_to_string("500.html")
    assert "<h1>Something went wrong</h1>" in html
    assert BACK in html
