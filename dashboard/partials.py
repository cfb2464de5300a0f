"""The partial templates shared by full pages, htmx responses and websocket pushes.

A push is rendered once for every browser watching, so it cannot know who is looking: with
`can_operate=None` the operate buttons are rendered "gated" and the stylesheet shows them only on
pages whose <body> says the user may operate (the server checks the permission on every POST).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.http import HttpRequest
from django.template.loader import render_to_string

from reindexer.models import JobEvent, ReindexJob
from reindexer.permissions import can_operate
from reindexer.presenter import JobView, present

# A job's timeline is short (a handful of events per claim); the cap guards the pathological case.
EVENTS_LIMIT = 500

Ops = Literal["shown", "gated", ""]


def ops_mode(can_operate: bool | None) -> Ops:
    if can_operate is None:
        return "gated"
    return "shown" if can_operate else ""


@dataclass(frozen=True)
class RowContext:
    """What the job partials render: the presenter's figures, and how to show the buttons."""

    view: JobView
    ops: Ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)


def job_context(job: ReindexJob, *, can_operate: bool | None = None) -> RowContext:
    return RowContext(present(job), ops_mode(can_operate))


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


def render_jobs_refresh() -> str:
    """Asks the jobs list to re-fetch its panel (a job appeared or changed state)."""
    return render_to_string("dashboard/job_list.html#jobs-refresh")


def render_flash(
    message: str, *, level: str = "info", link: tuple[str, str] | None = None, oob: bool = True
) -> str:
    """The page's message area (#flash), replaced out of band; `link` is (url, text)."""
    ctx = {"flash_message": message, "flash_level": level, "flash_link": link, "oob": oob}
    return render_to_string("dashboard/_flash.html", ctx)


def _can_operate(request: HttpRequest | None) -> bool | None:
    return None if request is None else can_operate(request.user)
