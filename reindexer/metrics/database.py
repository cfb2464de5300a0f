"""The metrics read from the job database at scrape time: a few queries, however many jobs.

Each collector runs its queries when Prometheus scrapes, not before, and reads ages with the
database's clock (as leases do), so a web process or a worker whose clock is off reports the
same values as any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
from django.db.models.functions import Coalesce, Now
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from reindexer import conf
from reindexer.models import JobStatus, ReindexJob

logger = logging.getLogger(__name__)

JOBS = "reindexer_jobs"
HEARTBEAT_AGE = "reindexer_heartbeat_age_seconds"
QUEUE_DEPTH = "reindexer_queue_depth"
DOCS = "reindexer_docs"  # exposed as reindexer_docs_total (a counter)
RETRIES = "reindexer_retries"  # exposed as reindexer_retries_total

DOCS_HELP = "Documents handled, by outcome"
RETRIES_HELP = "Retried store and embedder calls"


class JobGauges:
    """Jobs by status, the heartbeat age of each running job, and the claimable queue."""

    def collect(self) -> Iterable[Metric]:
        try:
            return [self._jobs(), self._heartbeat_ages(), self._queue_depth()]
        except DatabaseError as exc:
            # A database blink must not fail the scrape of a worker's own batch metrics.
            logger.warning("metrics: job database unavailable: %s", exc)
            return []

    @staticmethod
    def _jobs() -> Metric:
        # Slices are counted in their sliced job, as operators queue them.
        counts = dict(
            ReindexJob.objects.top_level()
            .order_by()
            .values("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        family = GaugeMetricFamily(JOBS, "Jobs by status (slices not counted)", labels=["status"])
        for status in JobStatus.values:
            family.add_metric([status], counts.get(status, 0))
        return family

    @staticmethod
    def _heartbeat_ages() -> Metric:
        # Running jobs only, which keeps the label's values as few as the workers' jobs.
        age = ExpressionWrapper(Now() - F("heartbeat_at"), output_field=DurationField())
        rows = (
            ReindexJob.objects.running()
            .filter(heartbeat_at__isnull=False)
            .order_by("id")
            .annotate(age=age)
            .values_list("id", "age")
        )
        family = GaugeMetricFamily(
            HEARTBEAT_AGE,
            "Seconds since each running job's heartbeat, by the job database's clock",
            labels=["job"],
        )
        for job_id, elapsed in rows:
            family.add_metric([str(job_id)], max(0.0, elapsed.total_seconds()))
        return family

    @staticmethod
    def _queue_depth() -> Metric:
        depth = (
            ReindexJob.objects.claimable(conf.get().lease_seconds)
            .filter(status=JobStatus.PENDING)
            .count()
        )
        return GaugeMetricFamily(
            QUEUE_DEPTH, "Pending jobs that a worker could claim now", value=depth
        )


class DatabaseTotals:
    """The web process's counters: the sums of every job's counters in the job database.

    A deleted job takes its documents with it, which Prometheus reads as a counter reset.
    """

    def collect(self) -> Iterable[Metric]:
        try:
            sums = ReindexJob.objects.top_level().aggregate(
                **{
                    name: Coalesce(Sum(name), 0)
                    for name in ("processed_docs", "failed_docs", "skipped_docs", "retries")
                }
            )
        except DatabaseError as exc:
            logger.warning("metrics: job database unavailable: %s", exc)
            return []
        docs = CounterMetricFamily(
            DOCS, f"{DOCS_HELP}, summed over the jobs in the job database", labels=["outcome"]
        )
        written = sums["processed_docs"] - sums["failed_docs"] - sums["skipped_docs"]
        docs.add_metric(["written"], written)
        docs.add_metric(["failed"], sums["failed_docs"])
        docs.add_metric(["skipped"], sums["skipped_docs"])
        retries = CounterMetricFamily(
            RETRIES,
            f"{RETRIES_HELP}, summed over the jobs in the job database",
            value=sums["retries"],
        )
        return [docs, retries]
