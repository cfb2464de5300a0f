"""Prometheus metrics: `/metrics` in the web process, and a worker's own port.

Each process builds its own CollectorRegistry (never prometheus-client's global one), so tests
and processes stay apart. The web registry reads everything from the job database at scrape
time (the batch histogram from the workers' registry rows); a worker's (reindexer.metrics.server)
adds what it observed itself: its own batch histogram, and its docs and retries counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from reindexer.metrics.database import DatabaseTotals, JobGauges
from reindexer.metrics.tally import RegisteredWorkersHistogram


def web_registry() -> CollectorRegistry:
    """The registry behind `/metrics`: job gauges, counter sums, and the workers' histogram."""
    registry = CollectorRegistry()
    registry.register(JobGauges())
    registry.register(DatabaseTotals())
    registry.register(RegisteredWorkersHistogram())
    return registry
