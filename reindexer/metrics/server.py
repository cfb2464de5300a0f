"""A worker's own metrics, served on REINDEXER_METRICS_PORT by prometheus-client's server.

The server binds the loopback address: it has no authentication, so a Prometheus on another
host reaches it through a proxy or a sidecar that the deployment chooses, never by default.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from django.db import connections
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from reindexer.metrics.batches import BatchMetrics
from reindexer.metrics.database import JobGauges

ADDRESS = "127.0.0.1"


class MetricsServerError(Exception):
    """The metrics port cannot be served (in use, or not ours to bind)."""


class ThreadConnectionsClosed:
    """Runs a collector that queries the database, then closes the calling thread's connections.

    The server answers each scrape in a new thread; its connection would otherwise outlive it.
    """

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self.inner.collect())
        finally:
            connections.close_all()


def worker_registry() -> tuple[CollectorRegistry, BatchMetrics]:
    """A worker's registry, and its batch metrics (to connect to the signal)."""
    registry = CollectorRegistry()
    batches = BatchMetrics(registry)
    registry.register(ThreadConnectionsClosed(JobGauges()))
    return registry, batches


class WorkerMetricsServer:
    """Serves a worker's metrics from a daemon thread while it runs: `with` it around the loop."""

    def __init__(self, port: int, address: str = ADDRESS) -> None:
        self.port = port
        self.address = address
        self.registry, self.batches = worker_registry()
        self._server: WSGIServer | None = None

    def start(self) -> WorkerMetricsServer:
        try:
            self._server, _ = start_http_server(self.port, self.address, registry=self.registry)
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise MetricsServerError(
                f"cannot serve metrics on {self.address}:{self.port} "
                f"(REINDEXER_METRICS_PORT): {reason}"
            ) from None
        self.batches.connect()
        return self

    def stop(self) -> None:
        self.batches.disconnect()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WorkerMetricsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
