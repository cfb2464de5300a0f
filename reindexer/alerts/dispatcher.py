"""The thread that notices alerting events and sends the due deliveries, with retries.

It runs beside a worker's claim loop, on its own database connection, and nothing it does
reaches the job: each attempt is a plain HTTP POST with a short timeout, and its result a row
update and a `webhook` event on the job's timeline.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from reindexer import conf
from reindexer.alerts import events
from reindexer.alerts.deliver import Attempt, RetryPolicy, attempt
from reindexer.alerts.subscribers import any_subscriber, origin
from reindexer.models import (
    AlertEvent,
    DeliveryState,
    EventKind,
    JobEvent,
    ReindexJob,
    WebhookDelivery,
)
from reindexer.progress import announce

logger = logging.getLogger(__name__)

# Deliveries claimed per pass: a backlog is worked through a batch at a time, between sweeps.
CLAIM_BATCH = 20
# On stop, the last pass sends what is due for at most this long, then leaves the rest queued.
FINAL_PASS_SECONDS = 5.0

# The dispatchers of this process, woken when a job's end commits here (see apps.py).
_running: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


def wake_all() -> None:
    """Wake this process's dispatchers: an alerting event was just committed."""
    for dispatcher in list(_running):
        dispatcher.wake()


@dataclass(eq=False)  # compared and hashed by identity (the WeakSet)
class Dispatcher:
    worker_id: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    interval: float = 1.0
    lookback: timedelta = events.LOOKBACK
    _stop: threading.Event = field(default_factory=threading.Event)
    _bell: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # (job id, key) already enqueued by this dispatcher, so a sweep does not rebuild their
    # payloads on every pass; with the monotonic time, to forget them after `lookback`.
    _noticed: dict[tuple[int, str], float] = field(default_factory=dict)
    _swept: bool = False  # the first sweep looks back `lookback`, later ones RECENT
    _database_away: bool = False  # said once per outage, not once per pass

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        self._thread = threading.Thread(
            target=self._run, name=f"alerts-{self.worker_id}", daemon=True
        )
        _running.add(self)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._bell.set()

    def stop(self, timeout: float = FINAL_PASS_SECONDS + 10) -> None:
        """Stop after one last pass (bounded), so a job that just ended is still announced."""
        self._stop.set()
        self._bell.set()
        if self._thread is not None:
            self._thread.join(timeout)
        _running.discard(self)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._safe_pass()
                self._bell.wait(self.interval)
                self._bell.clear()
            self._safe_pass(deadline=time.monotonic() + FINAL_PASS_SECONDS)
        finally:
            connection.close()  # this thread's own

    def _safe_pass(self, deadline: float | None = None) -> None:
        close_old_connections()
        try:
            self.run_pass(deadline=deadline)
        except (OperationalError, InterfaceError) as exc:
            # The job database blinked: the worker's own loop reports it; the outbox keeps
            # everything for the pass after it is back.
            if not self._database_away:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                logger.warning(
                    "alerts %s: paused, the job database is unreachable (%s: %s)",
                    self.worker_id,
                    type(exc).__name__,
                    first_line,
                )
            self._database_away = True
            connection.close()
            return
        except Exception:
            logger.warning("alerts %s: pass failed", self.worker_id, exc_info=True)
            connection.close()
            return
        if self._database_away:
            logger.info("alerts %s: resumed, the job database is back", self.worker_id)
            self._database_away = False

    # -- one pass ----------------------------------------------------------------------------

    def run_pass(self, deadline: float | None = None) -> int:
        """Notice new events, then send what is due; how many attempts were made."""
        if any_subscriber():
            self.notice()
        sent = 0
        while deadline is None or time.monotonic() < deadline:
            claimed = self.claim_due()
            if not claimed:
                break
            for delivery in claimed:
                self.send(delivery)
                sent += 1
            if deadline is None:
                break  # the rest next pass, after a sweep
        return sent

    def notice(self) -> int:
        """Enqueue the deliveries of events not seen yet; how many (job, key) were new."""
        now_mono = time.monotonic()
        forget = now_mono - max(self.lookback, events.RECENT).total_seconds()
        self._noticed = {k: at for k, at in self._noticed.items() if at > forget}
        lookback = events.RECENT if self._swept else self.lookback
        found: list[tuple[ReindexJob, str, str]] = []
        for job_event in events.recent_alerting_events(lookback):
            alert = events.alert_for(job_event.kind, job_event.job)
            if alert is not None:
                found.append((job_event.job, alert, events.event_key(job_event)))
        now = timezone.now()
        for job in events.stalled_jobs(conf.get().lease_seconds, now):
            found.append((job, AlertEvent.STALLED, events.stalled_key(job, now)))
        new = 0
        for job, alert, key in found:
            if (job.pk, key) in self._noticed:
                continue
            events.enqueue(job, alert, key)
            self._noticed[(job.pk, key)] = now_mono
            new += 1
        self._swept = True
        return new

    def _hold(self) -> timedelta:
        """How long a claim keeps a delivery from the other dispatchers: past the attempt's
        timeouts. Should this one die mid-attempt, another takes the delivery after it."""
        return timedelta(seconds=4 * self.policy.timeout + 5)

    def claim_due(self) -> list[WebhookDelivery]:
        """Take up to CLAIM_BATCH due deliveries for this dispatcher: each by a conditional
        UPDATE (on its count of attempts, still due) that only one dispatcher can win, counting the
        attempt and pushing its due time past the attempt. On PostgreSQL the candidates are
        also locked with SKIP LOCKED, so two dispatchers pick different ones."""
        due = WebhookDelivery.objects.filter(
            state=DeliveryState.PENDING, next_attempt_at__lte=Now()
        ).order_by("next_attempt_at", "id")
        # A read first: on SQLite the transaction takes the write lock at BEGIN.
        if not due.exists():
            return []
        claimed = []
        with transaction.atomic():
            for delivery in due.select_for_update(skip_locked=True)[:CLAIM_BATCH]:
                won = WebhookDelivery.objects.filter(
                    pk=delivery.pk,
                    state=DeliveryState.PENDING,
                    attempts=delivery.attempts,
                    next_attempt_at__lte=Now(),
                ).update(attempts=F("attempts") + 1, next_attempt_at=Now() + self._hold())
                if won == 1:
                    delivery.attempts += 1
                    claimed.append(delivery)
        return claimed

    def send(self, delivery: WebhookDelivery) -> Attempt:
        """Make the claimed attempt and record it; never raises for the receiver's failures."""
        body = dict(delivery.payload)
        if delivery.format != "slack":
            body["sent_at"] = timezone.now().isoformat()
        result = attempt(delivery.url, body, self.policy.timeout)
        self._record(delivery, result)
        return result

    def _record(self, delivery: WebhookDelivery, result: Attempt) -> None:
        where = f"{delivery.event} to {origin(delivery.url)}"
        updates: dict[str, object] = {"response_code": result.response_code, "error": result.error}
        if result.delivered:
            updates.update(state=DeliveryState.DELIVERED, delivered_at=Now())
            detail = f"{delivery.event} sent to {origin(delivery.url)}: {result.outcome}"
        elif delivery.attempts >= self.policy.max_attempts:
            updates.update(state=DeliveryState.FAILED)
            detail = f"{where} gave up after {delivery.attempts} attempts: {result.outcome}"
        else:
            delay = self.policy.delay(delivery.attempts)
            updates.update(next_attempt_at=Now() + timedelta(seconds=delay))
            detail = (
                f"{where} failed: {result.outcome} (attempt {delivery.attempts} of "
                f"{self.policy.max_attempts}), retry in {delay:.0f} s"
            )
        # Fenced on the claimed attempt: a dispatcher that outlived its hold records nothing.
        recorded = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=DeliveryState.PENDING, attempts=delivery.attempts
        ).update(**updates)
        if recorded != 1:
            return
        JobEvent.objects.create(
            job_id=delivery.job_id, kind=EventKind.WEBHOOK, actor=self.worker_id, detail=detail
        )
        # Open pages re-read the job: Redis carries the announcement, the relay sees updated_at.
        ReindexJob.objects.filter(pk=delivery.job_id).update(updated_at=Now())
        announce(delivery.job_id)


def start_dispatcher(worker_id: str, *, policy: RetryPolicy | None = None) -> Dispatcher:
    """Start the alerts thread of a worker; `stop()` it as the worker stops."""
    return Dispatcher(worker_id, policy=policy or RetryPolicy()).start()
