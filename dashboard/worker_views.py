"""The operator's console: the workers that ran recently, and the queue in claim order.

Each page re-fetches its own table every few seconds (htmx), rendered by the same partial as a
full load, so the live page never contradicts a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from dashboard.permissions import page
from reindexer import conf
from reindexer.models import ReindexJob, ReindexJobQuerySet, WorkerProcess
from reindexer.queue import annotated_waiting_for, running_jobs, with_waiting_for

# The workers page shows the workers seen this recently (the registry prunes after a day).
RECENT = timedelta(hours=24)
WORKERS_SHOWN = 200
QUEUE_PAGE_SIZE = 50
RUNNING_SHOWN = 100


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


@dataclass(frozen=True)
class WorkerRow:
    worker: WorkerProcess
    heartbeat_age: float
    state: str  # "running", "idle", "gone" or "stopped"


def _state(worker: WorkerProcess, age: float, lease_seconds: float) -> str:
    if worker.stopped_at is not None:
        return "stopped"
    if age > lease_seconds:
        return "gone"
    return "running" if worker.current_job_id else "idle"


def worker_rows(now: datetime, lease_seconds: float) -> list[WorkerRow]:
    """The recent workers, newest heartbeat first, in one query."""
    workers = (
        WorkerProcess.objects.filter(heartbeat_at__gte=now - RECENT)
        .select_related("current_job")
        .order_by("-heartbeat_at", "name")[:WORKERS_SHOWN]
    )
    rows = []
    for worker in workers:
        age = max(0.0, (now - worker.heartbeat_at).total_seconds())
        rows.append(WorkerRow(worker, age, _state(worker, age, lease_seconds)))
    return rows


@page()
@vary_on_headers("HX-Request")
def worker_list(request: HttpRequest) -> HttpResponse:
    lease_seconds = conf.get().lease_seconds
    context = {"rows": worker_rows(timezone.now(), lease_seconds), "lease_seconds": lease_seconds}
    template = "dashboard/_workers_table.html" if _is_htmx(request) else "dashboard/workers.html"
    return render(request, template, context)


@dataclass(frozen=True)
class QueueRow:
    position: int
    job: ReindexJob
    waiting_for: int | None


def _page_link(number: int) -> str:
    return f"?page={number}"


def top_level_pending_page(offset: int, limit: int) -> ReindexJobQuerySet:
    """reindexer.queue.pending_page without the slices: one query, `waiting_for` evaluated for
    the page's rows only."""
    window = ReindexJob.objects.top_level().pending().in_claim_order()[offset : offset + limit]
    page_jobs = ReindexJob.objects.filter(pk__in=window.values("pk"))
    return with_waiting_for(page_jobs).in_claim_order()


@page()
@vary_on_headers("HX-Request")
def queue(request: HttpRequest) -> HttpResponse:
    # Two queries: the count, on the bare pending jobs (so that it never evaluates the
    # waiting_for subqueries row by row), then the page's rows with their waiting_for.
    # The jobs as operators queued them: a sliced job's pending slices run under it.
    pending = Paginator(ReindexJob.objects.top_level().pending(), QUEUE_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    start = pending.start_index()
    page_rows = top_level_pending_page(max(0, start - 1), QUEUE_PAGE_SIZE)
    rows = [QueueRow(start + i, job, annotated_waiting_for(job)) for i, job in enumerate(page_rows)]
    context: dict[str, Any] = {
        "running": list(running_jobs().top_level()[:RUNNING_SHOWN]),
        "rows": rows,
        "page": pending,
        "page_links": {
            "prev": _page_link(pending.previous_page_number()) if pending.has_previous() else None,
            "next": _page_link(pending.next_page_number()) if pending.has_next() else None,
        },
        "refresh_url": f"{request.path}{_page_link(pending.number)}",
    }
    template = "dashboard/_queue_table.html" if _is_htmx(request) else "dashboard/queue.html"
    return render(request, template, context)
