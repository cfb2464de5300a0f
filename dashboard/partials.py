"""The partial templates shared by full pages, htmx responses and websocket pushes.

A push is rendered once for every browser watching, so it cannot know who is looking: with
`can_operate=None` the operate buttons are rendered "gated" and the stylesheet shows them only on
pages whose <body> says the user may operate (the server checks the permission on every POST).
"""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from reindexer import conf
from reindexer.jobs import status_label
from reindexer.models import JobEvent, JobStatus, ReindexJob

# A job's timeline is short (a handful of events per claim); the cap guards the pathological case.
EVENTS_LIMIT = 500
# Swapped into the jobs list page when a job appears or changes state: it loads at once and
# re-fetches the page's own URL (hx-get=""), so the tabs' counts and the rows follow.
JOBS_REFRESH = (
    '<div id="jobs-refresh" hx-swap-oob="true" hidden hx-get="" hx-trigger="load"'
    ' hx-target="#jobs-panel" hx-swap="outerHTML"></div>'
)

OPERATE_PERM = "reindexer.operate_reindexjob"
VIEW_PERM = "reindexer.view_reindexjob"

Ops = Literal["shown", "gated", ""]


def ops_mode(can_operate: bool | None) -> Ops:
    if can_operate is None:
        return "gated"
    return "shown" if can_operate else ""


def job_context(job: ReindexJob, *, can_operate: bool | None = None) -> dict[str, Any]:
    now = timezone.now()
    lease = conf.get().lease_seconds
    label = status_label(job)
    return {
        "job": job,
        "label": label,
        "badge": label.replace(" ", "-"),
        "percent": round(job.progress * 100),
        "rate": job.docs_per_second(now),
        "eta": job.eta_seconds(now),
        "elapsed": job.elapsed_seconds(now),
        # A finished job's last heartbeat says nothing about its health.
        "heartbeat_age": None if job.is_finished else job.heartbeat_age(now),
        "stalled": job.is_stalled(lease, now),
        "lease_seconds": lease,
        "ops": ops_mode(can_operate),
        # Decided from the counters alone, so a push costs no extra query; the POST re-checks.
        "can_cancel": job.status in (JobStatus.PENDING, JobStatus.RUNNING)
        and not job.is_cancelling,
        "can_retry": job.is_finished and job.failed_docs > 0,
    }


def render_row(job: ReindexJob, request: HttpRequest | None = None, *, oob: bool = False) -> str:
    ctx = {"r": job_context(job, can_operate=_can_operate(request)), "oob": oob}
    return render_to_string("dashboard/_job_row.html", ctx, request=request)


def render_progress(
    job: ReindexJob, request: HttpRequest | None = None, *, oob: bool = False
) -> str:
    ctx = {"r": job_context(job, can_operate=_can_operate(request)), "oob": oob}
    return render_to_string("dashboard/_job_progress.html", ctx, request=request)


def render_job_push(job: ReindexJob, *, can_operate: bool | None = None) -> str:
    """HTML for a websocket push: top-level elements with ids and hx-swap-oob, for the row in the
    jobs list and the progress block on the job's detail page (the browser ignores absent ids).

    A consumer that knows its user may pass `can_operate`; by default the buttons are gated."""
    ctx = {"r": job_context(job, can_operate=can_operate), "oob": True}
    return render_to_string("dashboard/_job_row.html", ctx) + render_to_string(
        "dashboard/_job_progress.html", ctx
    )


def timeline_events(job: ReindexJob) -> list[JobEvent]:
    """The job's most recent events, oldest first."""
    events = list(job.events.order_by("-at", "-id")[:EVENTS_LIMIT])
    events.reverse()
    return events


def render_timeline(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's timeline (id `job-timeline-<id>`)."""
    ctx = {"job": job, "events": timeline_events(job), "oob": oob}
    return render_to_string("dashboard/_job_timeline.html", ctx)


def render_job_oob(job: ReindexJob, request: HttpRequest) -> str:
    """Like a push, but for an htmx response to this user (buttons as their permission allows)."""
    return render_row(job, request, oob=True) + render_progress(job, request, oob=True)


def render_flash(
    message: str, *, level: str = "info", link: tuple[str, str] | None = None, oob: bool = True
) -> str:
    """The page's message area (#flash), replaced out of band; `link` is (url, text)."""
    ctx = {"flash_message": message, "flash_level": level, "flash_link": link, "oob": oob}
    return render_to_string("dashboard/_flash.html", ctx)


def _can_operate(request: HttpRequest | None) -> bool | None:
    if request is None:
        return None
    return request.user.has_perm(OPERATE_PERM)
