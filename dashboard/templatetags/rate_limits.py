"""Tags for a job's rate limit: its rate chart with the limit drawn across, and the limit as
text for the partials that read only `job` (the chart, the settings)."""

from __future__ import annotations

from django import template

from dashboard.charts import RateChart, rate_chart
from reindexer.models import ReindexJob
from reindexer.presenter import present
from reindexer.samples import series

register = template.Library()


@register.simple_tag
def limited_rate_chart(job: ReindexJob) -> RateChart:
    """The detail page's chart of the job's whole series, with the limit it runs under now."""
    return rate_chart(series(job), limit=present(job).limit)


@register.simple_tag
def rate_limit_text(job: ReindexJob) -> str:
    """ "200 docs/s", or "none"; a slice's is its sliced job's."""
    text = present(job).limit_text
    return f"{text} docs/s" if text else "none"
