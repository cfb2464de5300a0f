"""What the alert tests share: a retry policy quick enough for tests, and running a dispatcher's
passes until its deliveries settle."""

from __future__ import annotations

from reindexer.alerts.deliver import RetryPolicy
from reindexer.alerts.dispatcher import Dispatcher
from reindexer.models import DeliveryState, WebhookDelivery
from tests.integration.conftest import wait_until

FAST = RetryPolicy(max_attempts=3, base_delay=0.05, timeout=2.0)


def drain(dispatcher: Dispatcher, *, timeout: float = 30.0) -> None:
    """Run passes until no delivery is pending: each is delivered or given up on (a pass sends
    only what is due, so the retries' backoff is waited out)."""

    def settled() -> bool:
        dispatcher.run_pass()
        return not WebhookDelivery.objects.filter(state=DeliveryState.PENDING).exists()

    wait_until(settled, timeout=timeout, interval=0.02, what="the deliveries to settle")
