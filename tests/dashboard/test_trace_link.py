"""REINDEXER_TRACE_URL: the job page links its trace id to a trace viewer; unset, plain text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from dashboard.partials import render_detail_push
from reindexer.conf import ReindexerSettings
from reindexer.models import ReindexJob

MakeJob = Callable[..., ReindexJob]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
JAEGER = "https://jaeger.example/trace/{trace_id}?uiFind=x&q=1"


@pytest.fixture
def traced_job(make_job: MakeJob) -> ReindexJob:
    job = make_job(status="completed")
    ReindexJob.objects.filter(pk=job.pk).update(trace_context={"traceparent": TRACEPARENT})
    job.refresh_from_db()
    return job


def use_trace_url(settings: Any, url: str | None) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, trace_url=url)


@pytest.mark.django_db
def test_trace__is_a_link_to_the_viewer_when_the_setting_is_set(
    operator_client: Client, traced_job: ReindexJob, settings: Any
) -> None:
    use_trace_url(settings, JAEGER)
    html = operator_client.get(f"/jobs/{traced_job.pk}/").content.decode()
    expected = f"https://jaeger.example/trace/{TRACE_ID}?uiFind=x&amp;q=1"
    assert f'<a class="trace-link" href="{expected}"' in html
    assert f'<code class="small">{TRACEPARENT}</code></a>' in html


@pytest.mark.django_db
def test_trace__is_plain_text_without_the_setting(
    operator_client: Client, traced_job: ReindexJob, settings: Any
) -> None:
    use_trace_url(settings, None)
    html = operator_client.get(f"/jobs/{traced_job.pk}/").content.decode()
    assert f'<dd><code class="small">{TRACEPARENT}</code></dd>' in html
    assert "trace-link" not in html


@pytest.mark.django_db
def test_trace__the_live_settings_panel_carries_the_same_link(
    traced_job: ReindexJob, settings: Any
) -> None:
    use_trace_url(settings, JAEGER)
    pushed = render_detail_push(traced_job).settings
    assert f'href="https://jaeger.example/trace/{TRACE_ID}?uiFind=x&amp;q=1"' in pushed


@pytest.mark.django_db
def test_trace__a_traceparent_that_is_not_w3c_is_never_put_in_a_link(
    operator_client: Client, make_job: MakeJob, settings: Any
) -> None:
    use_trace_url(settings, JAEGER)
    job = make_job(status="completed")
    forged = '00-"><script>alert(1)</script>-00f067aa0ba902b7-01'
    ReindexJob.objects.filter(pk=job.pk).update(trace_context={"traceparent": forged})
    html = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "trace-link" not in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def settings_with(monkeypatch: pytest.MonkeyPatch, value: str) -> ReindexerSettings:
    monkeypatch.setenv("REINDEXER_TRACE_URL", value)
    return ReindexerSettings.from_environ()


@pytest.mark.parametrize(
    "value",
    ["https://tempo.example/explore?trace={trace_id}", "http://127.0.0.1:16686/trace/{trace_id}"],
)
def test_setting__an_http_template_with_the_placeholder_is_kept(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    assert settings_with(monkeypatch, value).trace_url == value


def test_setting__empty_means_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_with(monkeypatch, "").trace_url is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://jaeger.example/trace/", "must contain {trace_id}"),
        ("javascript:alert('{trace_id}')", "must be an http(s) URL"),
        ("ftp://jaeger.example/{trace_id}", "must be an http(s) URL"),
        ("/trace/{trace_id}", "must be an http(s) URL"),
    ],
)
def test_setting__is_refused_at_start_unless_http_with_the_placeholder(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match="REINDEXER_TRACE_URL") as refused:
        settings_with(monkeypatch, value)
    assert message in str(refused.value)
