"""The metrics a worker observes itself, batch by batch, from the `batch_committed` signal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from reindexer.metrics.database import DOCS, DOCS_HELP, RETRIES, RETRIES_HELP
from reindexer.signals import batch_committed

BATCH_SECONDS = "reindexer_batch_seconds"
BATCH_SECONDS_HELP = "Seconds to embed, write and commit one batch"
# From a small batch on a local store to a large one through a remote embedder.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("written", "failed", "skipped")


class BatchMetrics:
    """The batch histogram and the docs and retries counters of this worker process.

    `connect()` subscribes them to `batch_committed`; the receiver only adds numbers, so it is
    quick and cannot fail the batch loop it runs in.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_seconds = Histogram(
            BATCH_SECONDS, BATCH_SECONDS_HELP, buckets=BUCKETS, registry=registry
        )
        self.docs = Counter(
            DOCS, f"{DOCS_HELP}, by this worker", labelnames=["outcome"], registry=registry
        )
        for outcome in OUTCOMES:  # every outcome is exported from the start, at 0
            self.docs.labels(outcome)
        self.retries = Counter(RETRIES, f"{RETRIES_HELP}, by this worker", registry=registry)
        self._uid = f"reindexer.metrics.batches.{id(self)}"

    def connect(self) -> None:
        batch_committed.connect(self.observe, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        batch_committed.disconnect(dispatch_uid=self._uid)

    def observe(
        self,
        sender: object,
        *,
        seconds: float,
        written: int,
        failed: int,
        skipped: int,
        retries: int,
        **_: Any,
    ) -> None:
        self.batch_seconds.observe(seconds)
        for outcome, count in zip(OUTCOMES, (written, failed, skipped), strict=True):
            if count:
                self.docs.labels(outcome).inc(count)
        if retries:
            self.retries.inc(retries)


class WorkersOnlyHistogram:
    """The web process runs no batches: it declares the histogram, with no samples, and says
    where to find it (the job database keeps no batch durations to rebuild it from)."""

    def collect(self) -> Iterable[Metric]:
        help_text = (
            f"{BATCH_SECONDS_HELP}; observed by each worker and served on its "
            "REINDEXER_METRICS_PORT, so empty here"
        )
        return [HistogramMetricFamily(BATCH_SECONDS, help_text)]
