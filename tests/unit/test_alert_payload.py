"""Alert bodies (JSON and Slack), URL redaction, settings URLs and the retry policy."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest

from reindexer.alerts.deliver import RetryPolicy
from reindexer.alerts.payload import body_for, slack_escape
from reindexer.alerts.subscribers import from_settings, origin
from reindexer.models import JobStatus, ReindexJob
from reindexer.presenter import job_status

MakeJob = Callable[..., ReindexJob]

# What Slack's incoming webhooks accept in a message of mrkdwn sections and contexts.
SECTION_TEXT_MAX = 3000


def assert_valid_slack(body: dict[str, Any]) -> None:
    """A Slack incoming-webhook message: a non-empty `text`, and `blocks` of sections (mrkdwn
    text up to 3000 characters) and contexts (mrkdwn elements), in which `<`, `>` and `&` only
    appear as a link's brackets or as escapes."""
    assert set(body) == {"text", "blocks"}
    assert isinstance(body["text"], str) and body["text"]
    texts = [body["text"]]
    assert 1 <= len(body["blocks"]) <= 50
    for block in body["blocks"]:
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < len(block["text"]["text"]) <= SECTION_TEXT_MAX
            texts.append(block["text"]["text"])
        else:
            assert block["type"] == "context"
            for element in block["elements"]:
                assert element["type"] == "mrkdwn"
                texts.append(element["text"])
    for text in texts:
        without_links = re.sub(r"<https?://[^|<>]+\|[^<>]*>", "", text)
        assert "<" not in without_links and ">" not in without_links, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", without_links), text


def test_slack_escape__control_characters() -> None:
    assert slack_escape("a <b> & c") == "a &lt;b&gt; &amp; c"
    assert slack_escape("&lt;") == "&amp;lt;"  # an escape in a name is shown as typed


@pytest.mark.django_db
def test_slack_body__validates_and_escapes_the_job_name(make_job: MakeJob, settings: Any) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, public_url="https://rx.example")
    job = make_job(status=JobStatus.FAILED, processed=3, name="<@channel> & <!here>")
    body = body_for("slack", "failed", job)
    assert_valid_slack(body)
    link = f"<https://rx.example/jobs/{job.pk}/|#{job.pk} &lt;@channel&gt; &amp; &lt;!here&gt;>"
    assert body["text"].startswith(f"{link} failed")
    section = body["blocks"][0]["text"]["text"]
    assert "3 of 5 documents" in section and "Error: too many failures" in section


@pytest.mark.django_db
def test_slack_body__long_error_is_cut_within_slacks_limit(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING)
    ReindexJob.objects.filter(pk=job.pk).update(error="<x>" * 5000)
    job.refresh_from_db()
    assert_valid_slack(body_for("slack", "stalled", job))


@pytest.mark.django_db
def test_json_body__the_status_fields_and_an_absolute_link(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED, processed=5)
    body = body_for("json", "completed", job)
    assert set(body) == {"event", "job", "url"}
    assert body["job"] == job_status(job) | {
        k: body["job"][k] for k in ("docs_per_second", "heartbeat_age_seconds")
    }
    assert body["url"] == f"http://127.0.0.1:8000/jobs/{job.pk}/"


def test_origin__drops_path_query_and_credentials() -> None:
    assert origin("https://hooks.slack.com/services/T/B/XYZ?x=1#f") == "https://hooks.slack.com"
    assert origin("http://user:pw@127.0.0.1:8080/h") == "http://127.0.0.1:8080"


def test_from_settings__slack_fragment_selects_the_format_and_is_dropped() -> None:
    subscribers = from_settings(("https://a.example/h?t=1", "https://b.example/s#slack"))
    assert [(s.url, s.format) for s in subscribers] == [
        ("https://a.example/h?t=1", "json"),
        ("https://b.example/s", "slack"),
    ]


def test_retry_policy__exponential_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=30.0)
    for attempts, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)):
        delays = [policy.delay(attempts) for _ in range(200)]
        assert all(ceiling * 0.75 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
