"""Dashboard pages, and the htmx endpoints that operate jobs through reindexer.jobs.

Each view renders a whole page, or only its partial when htmx asks for one, so that links and
forms keep working without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url
from django_htmx.middleware import HtmxDetails

from dashboard.failures import failure_of
from dashboard.forms import NewJobForm, RerunRefused, rerun_initial
from dashboard.list_forms import JobListForm
from dashboard.list_query import (
    SORT_LABELS,
    CountedPaginator,
    distinct_values,
    sort_headers,
    status_counts,
)
from dashboard.partials import (
    failure_page_links,
    failures_page,
    failures_panel_context,
    job_context,
    render_flash,
    render_job_oob,
    timeline_events,
)
from dashboard.permissions import operate_action, page
from dashboard.phases import phase_steps
from reindexer import telemetry
from reindexer.errors import SpecError
from reindexer.jobs import cancel_job, create_job, force_cancel_job, retry_failed
from reindexer.models import InvalidTransition, JobStatus, ReindexJob
from reindexer.permissions import OPERATE, can_operate
from reindexer.presenter import present


class HtmxHttpRequest(HttpRequest):
    """A request that went through HtmxMiddleware (django-htmx's documented typing recipe)."""

    htmx: HtmxDetails


PAGE_SIZE = 25


def _htmx_target(request: HtmxHttpRequest) -> str | None:
    return request.htmx.target if request.htmx else None


def _actor(request: HttpRequest) -> AbstractBaseUser:
    """The signed-in user (login_required ran first); narrows the type for reindexer.jobs."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied
    return user


def _page_links(page: Page[Any], base: str, param: str) -> dict[str, str | None]:
    """Query strings for the previous and next page, keeping the other filters."""
    sep = "&" if base else ""

    def link(number: int) -> str:
        return f"?{base}{sep}{param}={number}"

    return {
        "prev": link(page.previous_page_number()) if page.has_previous() else None,
        "next": link(page.next_page_number()) if page.has_next() else None,
    }


# -- the jobs list ---------------------------------------------------------------------------


@page()
@vary_on_headers("HX-Request", "HX-Target")
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    form = JobListForm(request.GET)
    form.is_valid()  # an invalid field is reported, and the valid ones still apply
    filters = form.filters()
    counts = status_counts(filters.without_status())
    matches = counts[filters.status or "all"].n
    window = filters.window(matches)
    paginator = CountedPaginator(
        filters.jobs(matches=matches), PAGE_SIZE, count=min(matches, window or matches)
    )
    page = paginator.get_page(request.GET.get("page"))

    may_operate = can_operate(request.user)
    tabs = [
        {
            "label": label,
            "query": filters.query(status=value),
            "count": counts[value or "all"],
            "active": value == filters.status,
        }
        for value, label in [("", "All"), *JobStatus.choices]
    ]
    context = {
        "rows": [job_context(job, can_operate=may_operate) for job in page],
        "page": page,
        "page_links": _page_links(page, filters.query(), "page"),
        "tabs": tabs,
        "filters": filters,
        "filter_errors": form.error_messages(),
        "sort_window": window,
        "sort_choices": SORT_LABELS.items(),
        "headers": sort_headers(filters),
        "stores": _with_current(distinct_values("store"), filters.store),
        "collections": _with_current(distinct_values("collection"), filters.collection),
        "list_url": request.get_full_path(),
        "can_operate": may_operate,
    }
    if _htmx_target(request) == "jobs-panel":
        response = render(request, "dashboard/_jobs_panel.html", context)
        if request.htmx.trigger != "jobs-refresh":  # the live refresh keeps the address as it is
            # The address bar shows the list as its links write it: no empty fields of the form.
            page_param = f"page={page.number}" if page.number > 1 else ""
            query = "&".join(part for part in (filters.query(), page_param) if part)
            base = reverse("dashboard:job-list")
            push_url(response, f"{base}?{query}" if query else base)
        return response
    if may_operate:
        context["form"] = NewJobForm()
    return render(request, "dashboard/job_list.html", context)


def _with_current(values: list[str], current: str) -> list[str]:
    """The filter's choices, with the chosen one even if it is past the list's limit."""
    return values if not current or current in values else [*values, current]


# -- creating a job --------------------------------------------------------------------------


@page(OPERATE)
def job_new(request: HtmxHttpRequest) -> HttpResponse:
    """The New job form; `?from=<id>` prefills it with a finished job's settings (a re-run)."""
    rerun_of = request.GET.get("from")
    if rerun_of is None:
        return render(request, "dashboard/job_new.html", {"form": NewJobForm()})
    try:
        initial = rerun_initial(rerun_of)
    except RerunRefused as exc:
        context = {"form": NewJobForm(), "rerun_error": str(exc)}
        return render(request, "dashboard/job_new.html", context, status=exc.status)
    context = {"form": NewJobForm(initial=initial), "rerun_of": int(rerun_of)}
    return render(request, "dashboard/job_new.html", context)


@operate_action
def job_create(request: HtmxHttpRequest) -> HttpResponse:
    form = NewJobForm(request.POST)
    if form.is_valid():
        try:
            job = create_job(
                form.spec(), user=_actor(request), trace_context=telemetry.current_trace_context()
            )
        except SpecError as exc:  # the source may have vanished since the form was checked
            form.add_spec_error(exc)
        else:
            message = f"Job #{job.pk} queued."
            if not request.htmx:
                messages.success(request, message)
                return redirect("dashboard:job-detail", pk=job.pk)
            # A fresh form, the new row on top of the list, and the message.
            context = {
                "form": NewJobForm(),
                "r": job_context(job, can_operate=True),
                "flash_message": message,
                "flash_level": "info",
                "flash_link": (reverse("dashboard:job-detail", args=[job.pk]), "Open"),
            }
            return render(request, "dashboard/job_list.html#job-created", context, status=201)
    # 422 so that nothing caches the failed attempt; htmx is configured to swap it (base.html).
    if request.htmx:
        return render(
            request, "dashboard/_job_form.html", {"form": form, "htmx_form": True}, status=422
        )
    return render(request, "dashboard/job_new.html", {"form": form}, status=422)


# -- a job's page ----------------------------------------------------------------------------


@page()
@vary_on_headers("HX-Request", "HX-Target")
def job_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(
        ReindexJob.objects.select_related("created_by", "retry_of").prefetch_related("slice_jobs"),
        pk=pk,
    )
    if _htmx_target(request) == "failures":  # a page of the failures alone
        failures = failures_page(job, request.GET.get("fpage"))
        context: dict[str, Any] = {
            "job": job,
            "failures": failures,
            "failure_links": failure_page_links(failures),
        }
        return render(request, "dashboard/_failures.html", context)
    context = failures_panel_context(job, request.GET.get("fpage"))
    context.update(
        r=job_context(job, can_operate=can_operate(request.user)),
        events=timeline_events(job),
        steps=phase_steps(job),
    )
    return render(request, "dashboard/job_detail.html", context)


@page()
def failure_detail(request: HtmxHttpRequest, pk: int, failure_pk: int) -> HttpResponse:
    # A sliced job's page lists its slices' failures: they open under its URL too.
    failure = get_object_or_404(failure_of(pk, failure_pk))
    job = failure.job if failure.job_id == pk else get_object_or_404(ReindexJob, pk=pk)
    context = {"failure": failure, "job": job}
    if request.htmx:
        return render(request, "dashboard/_failure_detail.html", context)
    return render(request, "dashboard/failure_detail.html", context)


# -- operating a job -------------------------------------------------------------------------


def _operate(
    request: HtmxHttpRequest,
    pk: int,
    act: Callable[..., object],
    message: Callable[[ReindexJob], str],
) -> HttpResponse:
    """Apply `act` to the job; its refusal is a 409 with the reason, its success a message.

    On a slice, `act` acts on its sliced job (reindexer.jobs): the message names that job, and
    the page gets the slice's new state."""
    job = get_object_or_404(ReindexJob, pk=pk)
    try:
        acted = act(job, user=_actor(request))
    except InvalidTransition as exc:
        return _conflict(request, job, str(exc))
    job.refresh_from_db()
    return _done(request, job, message(acted if isinstance(acted, ReindexJob) else job))


@operate_action
def job_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _operate(request, pk, cancel_job, _cancel_message)


def _cancel_message(job: ReindexJob) -> str:
    if not job.is_cancelling:
        return f"Job #{job.pk} cancelled."
    if present(job).stalled:
        # Nobody will confirm the request: say so, and point at the way out.
        return (
            f"Cancel requested for job #{job.pk}, but its worker {job.worker} is not responding;"
            " use Force cancel to stop the job without it."
        )
    return f"Cancel requested for job #{job.pk}; its worker stops after the current batch."


@operate_action
def job_force_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _operate(
        request,
        pk,
        force_cancel_job,
        lambda job: f"Job #{job.pk} force-cancelled; its worker was not responding.",
    )


def _done(request: HtmxHttpRequest, job: ReindexJob, message: str) -> HttpResponse:
    """The job's new state and a message, in place for htmx, or back to the page otherwise."""
    if request.htmx:
        return HttpResponse(render_job_oob(job, request) + render_flash(message))
    messages.success(request, message)
    return redirect(_next_url(request, job))


@operate_action
def job_retry_failed(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(ReindexJob, pk=pk)
    try:
        retry = retry_failed(
            job, user=_actor(request), trace_context=telemetry.current_trace_context()
        )
    except (InvalidTransition, SpecError) as exc:
        # SpecError: the source is gone or now outside the roots; the job is unchanged either way.
        return _conflict(request, job, str(exc))
    message = f"Retry of the failed documents queued as job #{retry.pk}."
    if request.htmx:
        link = (reverse("dashboard:job-detail", args=[retry.pk]), "Open")
        return HttpResponse(render_job_oob(job, request) + render_flash(message, link=link))
    messages.success(request, message)
    return redirect("dashboard:job-detail", pk=retry.pk)


def _conflict(request: HtmxHttpRequest, job: ReindexJob, message: str) -> HttpResponse:
    """409 with a readable message; for htmx, also the job's current state, since it changed.

    The row comes first: the parser reads a fragment that starts with <tr> as table content."""
    job.refresh_from_db()
    if request.htmx:
        html = render_job_oob(job, request) + render_flash(message, level="error")
        return HttpResponse(html, status=409)
    context = {"job": job, "message": message}
    return render(request, "dashboard/conflict.html", context, status=409)


def _next_url(request: HtmxHttpRequest, job: ReindexJob) -> str:
    """Back to the page the form was on (the list or the job), never to another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("dashboard:job-detail", args=[job.pk])
