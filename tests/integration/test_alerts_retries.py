"""Retries with backoff, against a real HTTP server that fails, refuses or hangs; the job is
never touched."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from reindexer.alerts.deliver import RetryPolicy
from reindexer.alerts.dispatcher import Dispatcher
from reindexer.models import (
    DeliveryState,
    JobEvent,
    JobStatus,
    ReindexJob,
    Webhook,
    WebhookDelivery,
)
from tests.hook_server import hook_server
from tests.integration.alerts_support import drain
from tests.integration.conftest import snapshot

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]


def settle(dispatcher: Dispatcher) -> WebhookDelivery:
    """Run passes until the one delivery is delivered or given up on; that delivery."""
    drain(dispatcher)
    return WebhookDelivery.objects.get()


def job_row_but_updated_at(job: ReindexJob) -> dict[str, Any]:
    """The job's row as stored, but for `updated_at`: a delivery stamps it, so that open pages
    re-read the timeline."""
    row = snapshot(job)
    del row["updated_at"]
    return row


def webhook_details(job: ReindexJob) -> list[str]:
    return list(
        JobEvent.objects.filter(job=job, kind="webhook")
        .order_by("id")
        .values_list("detail", flat=True)
    )


def test_500_500_200__delivered_after_three_attempts_with_backoff(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED, processed=5)
    before = job_row_but_updated_at(job)
    policy = RetryPolicy(max_attempts=5, base_delay=0.3, timeout=2.0)
    with hook_server(500, 500) as server:
        Webhook.objects.create(url=server.url("/h/secret-token"))
        delivery = settle(Dispatcher("w-alerts", policy=policy))
        times = [r.at for r in server.requests()]

    assert delivery.state == DeliveryState.DELIVERED
    assert delivery.attempts == 3 and delivery.response_code == 200 and delivery.error == ""
    assert delivery.delivered_at is not None
    # Backoff: the base delay, then twice it, each with up to a quarter of jitter off, never less.
    assert len(times) == 3
    assert times[1] - times[0] >= 0.3 * 0.75
    assert times[2] - times[1] >= 0.6 * 0.75
    origin = f"http://127.0.0.1:{server.port}"
    details = webhook_details(job)
    assert len(details) == 3
    assert details[0].startswith(f"completed to {origin} failed: 500 (attempt 1 of 5), retry in")
    assert details[1].startswith(f"completed to {origin} failed: 500 (attempt 2 of 5), retry in")
    assert details[2] == f"completed sent to {origin}: 200"
    assert all("secret-token" not in d for d in details)
    assert job_row_but_updated_at(job) == before


def test_never_2xx__failed_after_max_attempts(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.FAILED, processed=2)
    before = job_row_but_updated_at(job)
    policy = RetryPolicy(max_attempts=3, base_delay=0.02, timeout=2.0)
    with hook_server(503, 503, 503, 503) as server:
        Webhook.objects.create(url=server.url())
        delivery = settle(Dispatcher("w-alerts", policy=policy))
        assert len(server.requests()) == 3

    assert delivery.state == DeliveryState.FAILED
    assert delivery.attempts == 3 and delivery.response_code == 503
    details = webhook_details(job)
    assert details[-1] == (
        f"failed to http://127.0.0.1:{server.port} gave up after 3 attempts: 503"
    )
    assert job_row_but_updated_at(job) == before


def _refusing_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused__recorded_as_the_error(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED, processed=5)
    before = job_row_but_updated_at(job)
    port = _refusing_port()
    Webhook.objects.create(url=f"http://127.0.0.1:{port}/hook?token=zzz")
    policy = RetryPolicy(max_attempts=2, base_delay=0.02, timeout=2.0)

    delivery = settle(Dispatcher("w-alerts", policy=policy))

    assert delivery.state == DeliveryState.FAILED
    assert delivery.response_code is None and delivery.error == "connection refused"
    details = webhook_details(job)
    assert details[0].startswith(f"completed to http://127.0.0.1:{port} failed: connection refused")
    assert details[-1] == (
        f"completed to http://127.0.0.1:{port} gave up after 2 attempts: connection refused"
    )
    assert all("zzz" not in d for d in details)
    assert job_row_but_updated_at(job) == before


def test_slow_server__cut_by_the_timeout_and_retried(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED, processed=5)
    before = job_row_but_updated_at(job)
    policy = RetryPolicy(max_attempts=3, base_delay=0.02, timeout=0.5)
    with hook_server(("sleep", 3.0)) as server:
        Webhook.objects.create(url=server.url())
        delivery = settle(Dispatcher("w-alerts", policy=policy))
        assert len(server.requests()) == 2

    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts == 2
    first = webhook_details(job)[0]
    assert first.startswith(
        f"completed to http://127.0.0.1:{server.port} failed: timed out after 0.5 s"
    )
    assert job_row_but_updated_at(job) == before
