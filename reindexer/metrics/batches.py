"""The metrics a worker observes itself, batch by batch, from the `batch_committed` signal."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from reindexer.metrics.database import DOCS, DOCS_HELP, RETRIES, RETRIES_HELP
from reindexer.metrics.tally import BATCH_SECONDS, BATCH_SECONDS_HELP, BUCKETS
from reindexer.signals import batch_committed

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
