"""The partial templates shared by full pages, htmx responses and websocket pushes.

A push is rendered once for every browser watching, so it cannot know who is looking: with
`can_operate=None` the operate buttons are rendered "gated" and the stylesheet shows them only on
pages whose <body> says the user may operate (the server checks the permission on every POST).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from django.core.paginator import Page, Paginator
from django.db.models import Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from dashboard.failures import job_failures, type_counts
from dashboard.phases import phase_steps
from reindexer.models import JobEvent, JobMode, ReindexJob
from reindexer.permissions import can_operate
from reindexer.presenter import JobView, present

# A job's timeline is short (a handful of events per claim); the cap guards the pathological case.
EVENTS_LIMIT = 500
# The detail page's failures per page; dashboard.views paginates with the same figure.
FAILURES_PAGE_SIZE = 20
FAILURES_PAGE_PARAM = "fpage"

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


def render_list_push(job: ReindexJob, *, can_operate: bool | None = None) -> str:
    """What the jobs list shows of a job, for its socket: the row, out of band."""
    ctx = {"r": job_context(job, can_operate=can_operate), "oob": True}
    return render_to_string("dashboard/_job_row.html", ctx)


@dataclass(frozen=True)
class DetailPush:
    """A detail page's panels, rendered apart so that a socket can skip the unchanged ones."""

    progress: str
    settings: str
    timeline: str
    failures: str
    chart: str
    phases: str
    slices: str = ""
    throttle: str = ""
    swap: str = ""

    def html(self) -> str:
        return (
            self.progress
            + self.swap
            + self.throttle
            + self.slices
            + self.phases
            + self.settings
            + self.timeline
            + self.failures
            + self.chart
        )


def render_detail_push(job: ReindexJob, *, can_operate: bool | None = None) -> DetailPush:
    """Every live panel of the job's detail page, out of band, as a reload shows them (the failures
    on their first page: the page's own pagination does not change its URL)."""
    row = job_context(job, can_operate=can_operate)
    ctx = {"r": row, "oob": True}
    return DetailPush(
        progress=render_to_string("dashboard/_job_progress.html", ctx),
        throttle=render_throttle(row, oob=True),
        swap=render_swap(row, oob=True),
        slices=render_slices(row, oob=True),
        settings=render_settings(job, oob=True),
        timeline=render_timeline(job, oob=True),
        failures=render_failures_panel(job, oob=True),
        chart=render_chart(job, oob=True),
        phases=render_phases(job, oob=True),
    )


def render_throttle(
    r: RowContext,
    *,
    oob: bool = False,
    request: HttpRequest | None = None,
    error: str = "",
    value: str | None = None,
) -> str:
    """The detail page's rate limit and its control (id `job-throttle-<id>`); an `error` about
    the typed `value` shows beside it."""
    ctx = {"r": r, "oob": oob, "throttle_error": error, "throttle_value": value}
    return render_to_string("dashboard/_job_throttle.html", ctx, request=request)


def render_swap(r: RowContext, *, oob: bool = False, request: HttpRequest | None = None) -> str:
    """A swap job's cutover (id `job-swap-<id>`): the alias, the verification's results, and
    Swap and Discard while it awaits approval; nothing for any other job."""
    if r.view.job.mode != JobMode.SWAP:
        return ""
    return render_to_string("dashboard/_job_swap.html", {"r": r, "oob": oob}, request=request)


def render_slices(r: RowContext, *, oob: bool = False) -> str:
    """A sliced job's slices table (id `job-slices-<id>`); nothing for any other job."""
    if not r.view.job.is_sliced:
        return ""
    return render_to_string("dashboard/_job_slices.html", {"r": r, "oob": oob})


def render_phases(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's phase steps (id `job-phases-<id>`): one query for the job's phases."""
    ctx = {"job": job, "steps": phase_steps(job), "oob": oob}
    return render_to_string("dashboard/_job_phases.html", ctx)


def render_chart(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's rate chart (id `job-chart-<id>`)."""
    return render_to_string("dashboard/_job_chart.html", {"job": job, "oob": oob})


def render_summary_tiles(*, oob: bool = True) -> str:
    """The tiles heading the jobs list (id `summary-tiles`): totals across every job."""
    return render_to_string("dashboard/_summary_tiles.html", {"oob": oob})


def render_job_push(job: ReindexJob, *, can_operate: bool | None = None) -> str:
    """The row and the progress block together, top-level elements with ids and hx-swap-oob. The
    sockets send each page only its own (render_list_push, render_detail_push): htmx logs an
    error for every element whose id the page lacks.

    A consumer that knows its user may pass `can_operate`; by default the buttons are gated."""
    ctx = {"r": job_context(job, can_operate=can_operate), "oob": True}
    return render_to_string("dashboard/_job_row.html", ctx) + render_to_string(
        "dashboard/_job_progress.html", ctx
    )


def timeline_events(job: ReindexJob) -> list[JobEvent]:
    """The job's most recent events, oldest first; a sliced job's include its slices', each
    with its slice (one join, not a query per row)."""
    rows = job.events.all()
    if job.is_sliced:
        rows = (
            JobEvent.objects.filter(Q(job_id=job.pk) | Q(job__parent_id=job.pk))
            .select_related("job")
            .only("at", "kind", "actor", "detail", "job__slice_number")
        )
    events = list(rows.order_by("-at", "-id")[:EVENTS_LIMIT])
    events.reverse()
    return events


def render_timeline(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's timeline (id `job-timeline-<id>`)."""
    ctx = {"job": job, "events": timeline_events(job), "oob": oob}
    return render_to_string("dashboard/_job_timeline.html", ctx)


def render_settings(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's settings and dates (id `job-settings-<id>`)."""
    return render_to_string("dashboard/_job_settings.html", {"job": job, "oob": oob})


def failures_page(job: ReindexJob, number: str | int | None = 1) -> Page[Any]:
    """One page of the job's failures, newest rows as the model orders them; the traceback is only
    read when a failure is opened."""
    return Paginator(job_failures(job), FAILURES_PAGE_SIZE).get_page(number)


def failure_page_links(page: Page[Any]) -> dict[str, str | None]:
    def link(number: int) -> str:
        return f"?{FAILURES_PAGE_PARAM}={number}"

    return {
        "prev": link(page.previous_page_number()) if page.has_previous() else None,
        "next": link(page.next_page_number()) if page.has_next() else None,
    }


def failures_panel_context(job: ReindexJob, number: str | int | None = 1) -> dict[str, Any]:
    """What the failures card shows, for the page and its push alike: a page of failures, its
    links, and the counts by error type."""
    failures = failures_page(job, number)
    return {
        "job": job,
        "failures": failures,
        "failure_links": failure_page_links(failures),
        "failure_types": type_counts(job),
    }


def render_failures_panel(job: ReindexJob, *, oob: bool = False) -> str:
    """The detail page's failures card (id `job-failures-<id>`), on its first page."""
    ctx = failures_panel_context(job)
    return render_to_string("dashboard/job_detail.html#failures-panel", {**ctx, "oob": oob})


def render_job_oob(job: ReindexJob, request: HttpRequest) -> str:
    """Like a push, but for an htmx response to this user (buttons as their permission allows),
    with only what the page the request came from shows (htmx reports an absent target)."""
    if _on_detail_page(request, job):
        # Not the failures: an action adds none, and a push would reset the user's failures page.
        r = job_context(job, can_operate=_can_operate(request))
        return (
            render_to_string("dashboard/_job_progress.html", {"r": r, "oob": True}, request=request)
            + render_swap(r, oob=True, request=request)
            + render_throttle(r, oob=True, request=request)
            + render_slices(r, oob=True)
            + render_phases(job, oob=True)
            + render_settings(job, oob=True)
            + render_timeline(job, oob=True)
            + render_chart(job, oob=True)  # the limit's line
        )
    return render_row(job, request, oob=True)


def _on_detail_page(request: HttpRequest, job: ReindexJob) -> bool:
    # HX-Current-URL, when it is this site's (django-htmx checks the origin).
    details = getattr(request, "htmx", None)
    url = details.current_url_abs_path if details else None
    if not url:
        return False
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return False
    return match.view_name == "dashboard:job-detail" and match.kwargs.get("pk") == job.pk


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
