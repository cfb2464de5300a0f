"""The bodies a webhook receives: our JSON, or a Slack incoming-webhook message."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from reindexer import conf
from reindexer.models import AlertEvent, ReindexJob, WebhookFormat
from reindexer.presenter import job_status

# Slack cuts a section's text at 3000 characters; an error message is cut well before.
SLACK_ERROR_CHARS = 500

HEADLINES: dict[str, str] = {
    AlertEvent.COMPLETED: "completed",
    AlertEvent.COMPLETED_WITH_ERRORS: "completed with errors",
    AlertEvent.FAILED: "failed",
    AlertEvent.STALLED: "stalled: no worker renews its lease",
    AlertEvent.AWAITING_APPROVAL: "awaits approval of its swap",
}


def job_link(job_id: int) -> str:
    """The absolute address of the job's page, at REINDEXER_PUBLIC_URL."""
    return conf.get().public_url + reverse("dashboard:job-detail", args=[job_id])


def json_body(event: str, job: ReindexJob) -> dict[str, Any]:
    """`{"event", "job": <status --json fields>, "url"}`; `sent_at` is added at each attempt."""
    return {"event": event, "job": job_status(job), "url": job_link(job.pk)}


def slack_escape(text: str) -> str:
    """Text as Slack's mrkdwn needs it: `&`, `<` and `>` are its control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _figures(status: dict[str, Any]) -> str:
    parts = [
        f"{status['written_docs']} written",
        f"{status['failed_docs']} failed",
        f"{status['skipped_docs']} skipped",
    ]
    total = status["total_docs"]
    done = f"{status['processed_docs']} of {total}" if total is not None else "?"
    rate = status["docs_per_second"]
    return f"{done} documents: " + ", ".join(parts) + (f" ({rate:g} docs/s)" if rate else "")


def slack_body(event: str, status: dict[str, Any], link: str) -> dict[str, Any]:
    """A Slack message: `text` (the notification's fallback) and `blocks` saying the same, with
    every piece of the job's own text escaped."""
    title = slack_escape(f"#{status['id']} {status['name']}")
    headline = f"<{link}|{title}> {HEADLINES.get(event, slack_escape(event))}"
    figures = _figures(status)
    lines = [headline, figures]
    if status["error"]:
        lines.append("Error: " + slack_escape(str(status["error"])[:SLACK_ERROR_CHARS]))
    where = slack_escape(
        f"{status['source']} → {status['store']}/{status['collection']} ({status['embedder']})"
    )
    return {
        "text": f"{headline}: {figures}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": where}]},
        ],
    }


def body_for(fmt: str, event: str, job: ReindexJob) -> dict[str, Any]:
    """What a subscriber of format `fmt` is sent for `event` of `job`, as the job is now."""
    body = json_body(event, job)
    if fmt == WebhookFormat.SLACK:
        return slack_body(event, body["job"], body["url"])
    return body
