"""LeaseKeeper: renewing a running job's heartbeat on its own thread, and noticing a lost lease."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from reindexer.jobs import cancel_job
from reindexer.lease import LeaseKeeper
from reindexer.models import JobStatus, ReindexJob
from tests.integration.conftest import wait_until

# The keeper runs on its own thread with its own connection: it only sees committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.05


def heartbeat_at(job: ReindexJob) -> datetime | None:
    return ReindexJob.objects.filter(pk=job.pk).values_list("heartbeat_at", flat=True).get()


def keeper_threads(job: ReindexJob) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"lease-job-{job.pk}"]


@pytest.fixture
def running_job(make_job: Callable[..., ReindexJob]) -> ReindexJob:
    """A running job whose last heartbeat is a while ago (but within its lease)."""
    return make_job(status=JobStatus.RUNNING, heartbeat_age=10)


@pytest.fixture
def keepers() -> Iterator[list[LeaseKeeper]]:
    """Keepers started by a test; every one is stopped at teardown, even if the test failed."""
    started: list[LeaseKeeper] = []
    yield started
    for keeper in started:
        keeper.stop()


def keep(keepers: list[LeaseKeeper], job: ReindexJob, token: uuid.UUID) -> LeaseKeeper:
    keeper = LeaseKeeper(job, token, INTERVAL)
    keepers.append(keeper)
    return keeper.start()


def lease_of(job: ReindexJob) -> uuid.UUID:
    assert job.lease_token is not None
    return job.lease_token


def test_keeper__renews_the_heartbeat_while_it_runs(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    before = heartbeat_at(running_job)
    assert before is not None
    keeper = keep(keepers, running_job, lease_of(running_job))

    wait_until(lambda: heartbeat_at(running_job) != before, what="a first renewed heartbeat")
    first = heartbeat_at(running_job)
    assert first is not None and first > before
    wait_until(lambda: heartbeat_at(running_job) != first, what="a second renewed heartbeat")

    assert not keeper.lost.is_set()
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.RUNNING
    assert running_job.lease_token == lease_of(running_job)


def test_keeper__renewed_job_is_not_stale(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    lease = 30.0
    before = heartbeat_at(running_job)
    keep(keepers, running_job, lease_of(running_job))
    wait_until(lambda: heartbeat_at(running_job) != before, what="a renewed heartbeat")
    # With a lease of 5 s, the old heartbeat (10 s ago) would have expired; the renewed one has not.
    assert not ReindexJob.objects.stale(lease - 25).filter(pk=running_job.pk).exists()


def test_keeper__cancelled_and_confirmed_job__sets_lost_and_ends_its_thread(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    token = lease_of(running_job)
    keeper = keep(keepers, running_job, token)
    cancel_job(running_job)
    ReindexJob.objects.get(pk=running_job.pk).confirm_cancel(token, "another-thread")

    wait_until(keeper.lost.is_set, what="the keeper to notice the lost lease")
    wait_until(lambda: not keeper_threads(running_job), what="the keeper's thread to end")
    assert ReindexJob.objects.get(pk=running_job.pk).status == JobStatus.CANCELLED


def test_keeper__job_reclaimed_under_another_token__sets_lost(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    old = lease_of(running_job)
    keeper = keep(keepers, running_job, old)
    # With a lease of 0 s, any heartbeat the keeper wrote has expired: another worker takes it.
    reclaimed = ReindexJob.objects.get(pk=running_job.pk)
    new = reclaimed.claim("second-worker", lease_seconds=-1)
    assert new != old

    wait_until(keeper.lost.is_set, what="the keeper to notice the reclaimed lease")
    reclaimed.refresh_from_db()
    assert (reclaimed.status, reclaimed.worker, reclaimed.lease_token) == (
        JobStatus.RUNNING,
        "second-worker",
        new,
    )


def test_keeper__started_with_a_token_that_never_held_the_job__sets_lost(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    before = heartbeat_at(running_job)
    keeper = keep(keepers, running_job, uuid.uuid4())
    wait_until(keeper.lost.is_set, what="the keeper to notice it holds no lease")
    assert heartbeat_at(running_job) == before


def test_stop__joins_the_thread_and_no_further_heartbeat_is_written(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    before = heartbeat_at(running_job)
    keeper = keep(keepers, running_job, lease_of(running_job))
    wait_until(lambda: heartbeat_at(running_job) != before, what="a renewed heartbeat")

    keeper.stop()
    assert not keeper_threads(running_job)
    assert not keeper.lost.is_set()
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.RUNNING, "stopping a keeper does not give up the job"


def test_stop__before_the_first_beat_returns_without_waiting_out_the_interval(
    running_job: ReindexJob,
) -> None:
    before = heartbeat_at(running_job)
    keeper = LeaseKeeper(running_job, lease_of(running_job), interval=3600).start()
    keeper.stop()
    assert not keeper_threads(running_job)
    assert heartbeat_at(running_job) == before
    assert not keeper.lost.is_set()


def test_stop__of_a_keeper_whose_lease_was_lost_returns(
    running_job: ReindexJob, keepers: list[LeaseKeeper]
) -> None:
    keeper = keep(keepers, running_job, uuid.uuid4())
    wait_until(keeper.lost.is_set, what="the keeper to notice it holds no lease")
    keeper.stop()
    keeper.stop()  # twice is harmless
    assert not keeper_threads(running_job)
