"""The dispatcher as a thread: woken by a job's end, two at once sending each delivery once, and
stalled jobs reported once per stall."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from reindexer.alerts.deliver import RetryPolicy
from reindexer.alerts.dispatcher import Dispatcher, start_dispatcher
from reindexer.models import (
    AlertEvent,
    DeliveryState,
    JobStatus,
    ReindexJob,
    Webhook,
    WebhookDelivery,
)
from tests.hook_server import hook_server
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
FAST = RetryPolicy(max_attempts=5, base_delay=0.05, timeout=2.0)


def test_started_dispatcher__sends_a_completion_and_stops(
    make_job: MakeJob, run_burst_worker: Callable[..., None]
) -> None:
    with hook_server() as server:
        Webhook.objects.create(url=server.url())
        dispatcher = start_dispatcher("w-thread", policy=FAST)
        try:
            job = make_job()
            run_burst_worker()
            wait_until(lambda: len(server.requests()) == 1, what="the completion's POST")
        finally:
            dispatcher.stop()
        assert server.requests()[0].body["job"]["id"] == job.pk
    assert WebhookDelivery.objects.get().state == DeliveryState.DELIVERED


def test_stop__last_pass_sends_what_just_ended(make_job: MakeJob) -> None:
    """A burst worker that stops right after its last job still announces it."""
    with hook_server() as server:
        Webhook.objects.create(url=server.url())
        dispatcher = Dispatcher("w-final", policy=FAST, interval=3600).start()
        # Its first pass has run (or runs) with nothing to do; the job ends, then the stop.
        wait_until(lambda: dispatcher._swept, what="the first pass")
        make_job(status=JobStatus.COMPLETED)
        dispatcher.stop()
        assert len(server.requests()) == 1


def test_two_dispatchers_at_once__each_delivery_sent_exactly_once(make_job: MakeJob) -> None:
    """On PostgreSQL (DATABASE_URL) the claims go through SKIP LOCKED as well; on SQLite through
    the conditional UPDATE alone."""
    jobs = [make_job(status=JobStatus.COMPLETED, collection=f"c{i}") for i in range(15)]
    with hook_server() as server:
        for path in ("/a", "/b", "/c"):
            Webhook.objects.create(url=server.url(path))
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(name: str) -> None:
            dispatcher = Dispatcher(name, policy=FAST)
            try:
                start.wait()
                for _ in range(200):
                    dispatcher.run_pass()
                    if not WebhookDelivery.objects.exclude(state=DeliveryState.DELIVERED).exists():
                        break
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(f"w{n}",)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        sent = Counter((r.body["job"]["id"], r.path) for r in server.requests())

    expected = {(job.pk, path) for job in jobs for path in ("/a", "/b", "/c")}
    assert set(sent) == expected
    assert set(sent.values()) == {1}
    assert WebhookDelivery.objects.filter(state=DeliveryState.DELIVERED, attempts=1).count() == 45
    # One attempt recorded per delivery, by whichever dispatcher won its claim.
    actors = Counter(e.actor for job in jobs for e in job.events.filter(kind="webhook"))
    assert set(actors) <= {"w1", "w2"} and sum(actors.values()) == 45


def test_stalled__one_delivery_per_stall(make_job: MakeJob) -> None:
    stale = make_job(status=JobStatus.RUNNING, heartbeat_age=120, collection="stale")
    make_job(status=JobStatus.RUNNING, heartbeat_age=1, collection="fresh")
    with hook_server() as server:
        Webhook.objects.create(url=server.url(), events=[AlertEvent.STALLED])
        dispatcher = Dispatcher("w-stall", policy=FAST)
        dispatcher.run_pass()
        dispatcher.run_pass()
        Dispatcher("w-other", policy=FAST).run_pass()  # another worker's sweep, same stall
        wait_until(lambda: len(server.requests()) >= 1, what="the stalled POST")
        [request] = server.requests()
        assert request.body["event"] == "stalled"
        assert request.body["job"]["id"] == stale.pk and request.body["job"]["stalled"] is True

        # It beats again, then stalls anew: a second stall, a second alert.
        ReindexJob.objects.filter(pk=stale.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=90)
        )
        dispatcher.run_pass()
        dispatcher.run_pass()
        wait_until(lambda: len(server.requests()) == 2, what="the second stall's POST")
    assert WebhookDelivery.objects.filter(job=stale, event="stalled").count() == 2
    assert not WebhookDelivery.objects.exclude(job=stale).exists()
    assert ReindexJob.objects.get(pk=stale.pk).status == JobStatus.RUNNING
