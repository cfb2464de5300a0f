"""Tags that fetch what the job pictures draw: partials rendered by pages whose views know
nothing of them (the detail page, the jobs list) and by the sockets' pushes alike."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from dashboard.charts import RateChart, Sparkline, rate_chart, sparkline
from dashboard.summary import Summary, summary
from reindexer.models import JobStatus, ReindexJob
from reindexer.samples import Point, current_rate, recent_points, series, with_end

register = template.Library()

# Where a page's batch of recent samples is kept while it renders (see row_sparkline).
_BATCH_KEY = "charts.recent_points"


@register.simple_tag
def job_rate_chart(job: ReindexJob) -> RateChart:
    """The detail page's chart of the job's whole series."""
    return rate_chart(series(job))


@register.simple_tag(takes_context=True)
def row_sparkline(context: template.Context) -> Sparkline | None:
    """The sparkline and current rate of the row `r`, for a running job (None otherwise).

    On the jobs list every row's recent samples come from one query, made for all the rows of
    the page (`rows`) at the first running one and kept in the render context's root, which lives
    as long as the page's rendering; a row pushed alone costs its own query."""
    row = context["r"]
    job: ReindexJob = row.job
    if job.status != JobStatus.RUNNING:
        return None
    now = row.now
    root: dict[Any, Any] = context.render_context.dicts[0]
    batches: dict[int, dict[int, list[Point]]] = root.setdefault(_BATCH_KEY, {})
    rows = context.get("rows")
    key = id(rows)
    batch = batches.get(key)
    if batch is None or job.pk not in batch:
        jobs = [r.job for r in rows] if rows and job in [r.job for r in rows] else [job]
        batch = recent_points(jobs, now)
        batches[key] = batch
    recent = batch[job.pk]
    return sparkline(with_end(recent, job), current_rate(job, recent, now))


@register.simple_tag
def summary_tiles() -> Summary:
    return summary(timezone.now())
