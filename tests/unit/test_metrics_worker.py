"""A worker's own metrics: the signal feeds its counters and histogram; its server serves them."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from reindexer.metrics.batches import BatchMetrics
from reindexer.metrics.server import MetricsServerError, WorkerMetricsServer
from reindexer.models import JobStatus, ReindexJob
from reindexer.signals import send_batch_committed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def commit(
    seconds: float, written: int, failed: int = 0, skipped: int = 0, retries: int = 0
) -> None:
    send_batch_committed(
        object(),
        job=object(),
        seconds=seconds,
        written=written,
        failed=failed,
        skipped=skipped,
        retries=retries,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def batches() -> Iterator[tuple[CollectorRegistry, BatchMetrics]]:
    registry = CollectorRegistry()
    metrics = BatchMetrics(registry)
    metrics.connect()
    try:
        yield registry, metrics
    finally:
        metrics.disconnect()


def test_batch_committed__observed_in_the_histogram_and_the_counters(
    batches: tuple[CollectorRegistry, BatchMetrics],
) -> None:
    registry, _ = batches
    commit(0.02, written=200)
    commit(0.3, written=150, failed=50, retries=4)
    commit(7.0, written=0, skipped=200, retries=1)

    assert value(registry, "reindexer_batch_seconds_count") == 3
    assert value(registry, "reindexer_batch_seconds_sum") == pytest.approx(7.32)
    assert value(registry, "reindexer_batch_seconds_bucket", le="0.025") == 1
    assert value(registry, "reindexer_batch_seconds_bucket", le="0.5") == 2
    assert value(registry, "reindexer_batch_seconds_bucket", le="5.0") == 2
    assert value(registry, "reindexer_batch_seconds_bucket", le="+Inf") == 3
    assert value(registry, "reindexer_docs_total", outcome="written") == 350
    assert value(registry, "reindexer_docs_total", outcome="failed") == 50
    assert value(registry, "reindexer_docs_total", outcome="skipped") == 200
    assert value(registry, "reindexer_retries_total") == 5


def test_every_outcome__exported_at_zero_before_any_batch(
    batches: tuple[CollectorRegistry, BatchMetrics],
) -> None:
    registry, _ = batches

    for outcome in ("written", "failed", "skipped"):
        assert value(registry, "reindexer_docs_total", outcome=outcome) == 0
    assert value(registry, "reindexer_batch_seconds_count") == 0


def test_disconnect__no_more_observations(batches: tuple[CollectorRegistry, BatchMetrics]) -> None:
    registry, metrics = batches
    commit(0.1, written=10)
    metrics.disconnect()
    commit(0.1, written=10)

    assert value(registry, "reindexer_docs_total", outcome="written") == 10


def test_two_workers_in_one_process__each_registry_counts_on_its_own() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a, b = BatchMetrics(first), BatchMetrics(second)
    a.connect()
    try:
        commit(0.1, written=5)
        b.connect()
        commit(0.1, written=7)
    finally:
        a.disconnect()
        b.disconnect()

    assert value(first, "reindexer_docs_total", outcome="written") == 12
    assert value(second, "reindexer_docs_total", outcome="written") == 7


@pytest.mark.django_db(transaction=True)
def test_server__serves_the_batches_and_the_job_gauges_over_http(
    make_job: Callable[..., ReindexJob],
) -> None:
    make_job()
    make_job(status=JobStatus.RUNNING, collection="a")
    port = free_port()
    with WorkerMetricsServer(port):
        commit(0.05, written=20, failed=1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
            body = response.read().decode()
            content_type = response.headers["Content-Type"]

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert content_type.startswith("text/plain")
    assert samples[("reindexer_batch_seconds_count", ())] == 1
    assert samples[("reindexer_docs_total", (("outcome", "written"),))] == 20
    assert samples[("reindexer_docs_total", (("outcome", "failed"),))] == 1
    assert samples[("reindexer_jobs", (("status", "pending"),))] == 1
    assert samples[("reindexer_jobs", (("status", "running"),))] == 1
    assert samples[("reindexer_queue_depth", ())] == 1


def test_server__a_port_in_use_is_one_clear_error_and_a_stopped_server_frees_its_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError) as raised:
            WorkerMetricsServer(port).start()
    assert str(raised.value) == (
        f"cannot serve metrics on 127.0.0.1:{port} (REINDEXER_METRICS_PORT): already in use"
    )

    server = WorkerMetricsServer(port).start()
    server.stop()
    WorkerMetricsServer(port).start().stop()  # the port was released


def test_server__stopped_it_observes_no_more_batches() -> None:
    server = WorkerMetricsServer(free_port()).start()
    server.stop()
    commit(0.1, written=3)

    assert value(server.registry, "reindexer_docs_total", outcome="written") == 0
