"""The partial templates shared by full pages, htmx responses and websocket pushes."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from reindexer import conf
from reindexer.jobs import status_label
from reindexer.models import ReindexJob


def job_context(job: ReindexJob) -> dict[str, Any]:
    now = timezone.now()
    return {
        "job": job,
        "label": status_label(job),
        "percent": round(job.progress * 100),
        "rate": job.docs_per_second(now),
        "eta": job.eta_seconds(now),
        "elapsed": job.elapsed_seconds(now),
        "heartbeat_age": job.heartbeat_age(now),
        "stalled": job.is_stalled(conf.get().lease_seconds, now),
    }


def render_job_push(job: ReindexJob) -> str:
    """HTML for a websocket push: top-level elements with ids and hx-swap-oob, for the row in the
    jobs list and the progress block on the job's detail page (the browser ignores absent ids)."""
    ctx = {**job_context(job), "oob": True}
    return render_to_string("dashboard/_job_row.html", ctx) + render_to_string(
        "dashboard/_job_progress.html", ctx
    )
