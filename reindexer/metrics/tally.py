"""Each worker's batch durations, tallied in its registry row, so that the web process's
`/metrics` exports `reindexer_batch_seconds` for every worker without scraping them.

A worker keeps its tally in memory (one `batch_committed` receiver, a few additions per batch)
and writes a snapshot with the heartbeats its registry row takes anyway: nothing is added to
the batch commit. `/metrics` sums the snapshots of the registry's rows. A worker that restarts
starts from zero, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

from django.db import DatabaseError
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from reindexer.signals import batch_committed

BATCH_SECONDS = "reindexer_batch_seconds"
BATCH_SECONDS_HELP = "Seconds to embed, write and commit one batch"
# From a small batch on a local store to a large one through a remote embedder.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BatchTally:
    """Batches by duration bucket (the last one: over every bound), and their summed seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._uid = f"reindexer.metrics.tally.{id(self)}"

    def connect(self) -> None:
        batch_committed.connect(self._on_batch, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        batch_committed.disconnect(dispatch_uid=self._uid)

    def _on_batch(self, sender: object, *, seconds: float, **_: Any) -> None:
        self.observe(seconds)

    def observe(self, seconds: float) -> None:
        with self._lock:
            # The first bound at or above `seconds`: Prometheus's `le`.
            self._counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """What the registry row keeps: {"buckets": [count per bucket], "sum": seconds}."""
        with self._lock:
            return {"buckets": list(self._counts), "sum": self._sum}


def summed(snapshots: Iterable[dict[str, Any]]) -> tuple[list[int], float]:
    """The per-bucket counts and the seconds of several snapshots together; snapshots of
    another bucket layout (an older version's) are left out."""
    counts = [0] * (len(BUCKETS) + 1)
    total = 0.0
    for snapshot in snapshots:
        buckets = snapshot.get("buckets") if isinstance(snapshot, dict) else None
        if not isinstance(buckets, list) or len(buckets) != len(counts):
            continue
        counts = [a + int(b) for a, b in zip(counts, buckets, strict=True)]
        total += float(snapshot.get("sum") or 0.0)
    return counts, total


def histogram(counts: Sequence[int], total: float, help_text: str) -> HistogramMetricFamily:
    bounds = [str(b) for b in BUCKETS] + ["+Inf"]  # as prometheus-client writes `le`
    cumulative = list(accumulate(counts))
    return HistogramMetricFamily(
        BATCH_SECONDS,
        help_text,
        buckets=list(zip(bounds, cumulative, strict=True)),
        sum_value=total,
    )


class RegisteredWorkersHistogram:
    """`reindexer_batch_seconds` in the web process: the workers' tallies, from their rows."""

    def collect(self) -> Iterable[Metric]:
        from reindexer.models import WorkerProcess  # the apps are ready when it is scraped

        try:
            snapshots = list(WorkerProcess.objects.values_list("batch_seconds", flat=True))
        except DatabaseError:
            return []  # JobGauges says the database is away
        counts, total = summed(snapshots)
        return [
            histogram(
                counts,
                total,
                f"{BATCH_SECONDS_HELP}, by the workers in the registry (each since it started)",
            )
        ]
