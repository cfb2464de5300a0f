"""Which job events alert, and the deliveries they make (the outbox).

Deliveries are found by a sweep over committed rows, not by a callback at commit time: a worker
that dies right after committing a job's end leaves the event in the database, and the next
sweep (by any worker's dispatcher) still finds it. The unique (job, key, url) makes a sweep
that notices an event twice, or two dispatchers noticing it at once, deliver it once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now

from reindexer.alerts.payload import body_for
from reindexer.alerts.subscribers import subscribers_for
from reindexer.models import (
    AlertEvent,
    EventKind,
    JobEvent,
    ReindexJob,
    WebhookDelivery,
)
from reindexer.presenter import present

# The timeline kinds that alert; a swap job logs `awaiting_approval` as it stops for an operator.
ALERTING_KINDS = (EventKind.COMPLETED, EventKind.FAILED, EventKind.AWAITING_APPROVAL)

# How far back a dispatcher's first sweep looks for events: longer than a worker takes to
# restart, so an end committed just before a crash is still found.
LOOKBACK = timedelta(hours=1)
# How far back its later sweeps look: longer than any transaction that logs an event can take to
# commit (the event is stamped before its commit, so it may appear late).
RECENT = timedelta(minutes=2)


def alert_for(kind: str, job: ReindexJob) -> str | None:
    """The alert a timeline event of `kind` makes for `job`, if any."""
    if kind == EventKind.COMPLETED:
        # A completed job is final: its counters are those it completed with.
        return AlertEvent.COMPLETED_WITH_ERRORS if job.failed_docs else AlertEvent.COMPLETED
    if kind == EventKind.FAILED:
        return AlertEvent.FAILED
    if kind == EventKind.AWAITING_APPROVAL:
        return AlertEvent.AWAITING_APPROVAL
    return None


def enqueue(job: ReindexJob, event: str, key: str) -> int:
    """One pending delivery of `event` per subscriber, unless this (job, key, url) has one.
    How many subscribers there were."""
    subscribers = subscribers_for(event)
    if not subscribers:
        return 0
    bodies: dict[str, dict[str, Any]] = {}
    rows = []
    for subscriber in subscribers:
        if subscriber.format not in bodies:
            bodies[subscriber.format] = body_for(subscriber.format, event, job)
        rows.append(
            WebhookDelivery(
                job=job,
                webhook_id=subscriber.webhook_id,
                url=subscriber.url,
                format=subscriber.format,
                event=event,
                key=key,
                payload=bodies[subscriber.format],
            )
        )
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def recent_alerting_events(lookback: timedelta = LOOKBACK) -> list[JobEvent]:
    """The alerting events of top-level jobs (a slice's end is not its job's) logged within
    `lookback`, oldest first. The jobs are found by `updated_at` (indexed, set by the write
    that ended them), then their events by (job, at)."""
    cutoff = Now() - lookback
    return list(
        JobEvent.objects.filter(
            kind__in=ALERTING_KINDS,
            job__parent__isnull=True,
            job__updated_at__gte=cutoff,
            at__gte=cutoff,
        )
        .select_related("job")
        .order_by("at", "id")
    )


def event_key(event: JobEvent) -> str:
    return f"event:{event.pk}"


def stalled_key(job: ReindexJob, now: datetime) -> str:
    """A stall is keyed by the heartbeat it stalled at: reported once, and again only if the job
    beats and stalls anew. A sliced job's is its freshest running slice's."""
    view = present(job, now)
    beats = [v.job.heartbeat_at for v in view.running_slices if v.job.heartbeat_at is not None]
    heartbeat = max(beats) if beats else job.heartbeat_at
    return f"stalled:{heartbeat.isoformat() if heartbeat else '-'}"


def stalled_jobs(lease_seconds: float, now: datetime) -> list[ReindexJob]:
    """Running top-level jobs no worker is on: one query for the candidates (a stale heartbeat
    of their own, or of a running slice), judged by the presenter's own rule. A job asked to
    cancel is left out: with its lease expired it is ended, not stalled."""
    cutoff = Now() - timedelta(seconds=lease_seconds)
    stale_slice = Exists(
        ReindexJob.objects.running().filter(parent=OuterRef("pk"), heartbeat_at__lt=cutoff)
    )
    candidates = (
        ReindexJob.objects.running()
        .top_level()
        .filter(cancel_requested_at__isnull=True)
        .filter(Q(heartbeat_at__lt=cutoff) | stale_slice)
    )
    return [job for job in candidates if present(job, now).stalled]
