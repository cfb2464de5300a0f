"""Workers whose host clock is 10 minutes off (tests/skewed_clock.py) against a normal one:
leases are the database's clock, so a skewed worker can neither steal a live job nor keep a
dead one alive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from django.db.models.functions import Now

from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.integration.conftest import Processes, wait_for_output, wait_until
from tests.integration.fleet import Fleet, cli_verify, events, kinds, row

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]

LEASE_SECONDS = 2.0
SHORT_LEASE = {"REINDEXER_LEASE_SECONDS": str(LEASE_SECONDS), "REINDEXER_HEARTBEAT_SECONDS": "0.4"}
SKEW = 600.0
SKEWS = pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["10-min-ahead", "10-min-behind"])
# About 8 s of writing: four leases.
SLOW = {"batch_size": 10, "store": "flaky(sqlite-vec,latency=200)"}
DOCS = 400


def database_now(job: ReindexJob) -> datetime:
    """The job database's clock, read through `job`'s row."""
    now: datetime = (
        ReindexJob.objects.filter(pk=job.pk)
        .annotate(db_now=Now())
        .values_list("db_now", flat=True)
        .get()
    )
    return now


def assert_clean(processes: Processes, job: ReindexJob) -> None:
    report = cli_verify(processes, job)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (DOCS, 0, 0), report


@SKEWS
def test_skewed_idle_worker__cannot_steal_the_live_job_of_a_normal_worker(
    offset: float, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(DOCS), collection="live", **SLOW)
    fleet = Fleet(processes, SHORT_LEASE)
    fleet.start("w-normal")
    wait_until(lambda: row(job).processed_docs >= 20, what="the normal worker under way")
    skewed = fleet.start("w-skewed", offset=offset)
    started = wait_for_output(skewed, "worker w-skewed started")
    wait_until(lambda: row(job).is_finished, timeout=40, what="the job to end")
    fleet.stop()

    job = row(job)
    assert job.status == JobStatus.COMPLETED, fleet.tail()
    assert f"shifted by {offset:+g} s" in started
    assert EventKind.RECLAIMED not in kinds(job), kinds(job)
    assert {e.actor for e in events(job)} == {"cli", "w-normal"}
    assert_clean(processes, job)


@SKEWS
def test_skewed_worker_killed__a_normal_worker_reclaims_its_job_after_the_lease(
    offset: float, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(DOCS), collection="dead", **SLOW)
    fleet = Fleet(processes, SHORT_LEASE)
    fleet.start("w-skewed", offset=offset)
    wait_until(lambda: row(job).processed_docs >= 40, what="the skewed worker under way")
    # Its beats carry the database's clock, not its own (which would put them 10 minutes off).
    beat = row(job).heartbeat_at
    assert beat is not None and abs((beat - database_now(job)).total_seconds()) < 5
    # Yet its own clock is off: what it stamps with it (the claim's event) shows the offset.
    claim = events(job, EventKind.CLAIMED)[0]
    assert abs((claim.at - beat).total_seconds() - offset) < 60

    fleet.kill("w-skewed")
    killed = row(job)
    killed_at, last_beat = killed.processed_docs, killed.heartbeat_at
    assert last_beat is not None
    fleet.start("w-normal")
    wait_until(
        lambda: EventKind.RECLAIMED in kinds(row(job)),
        timeout=LEASE_SECONDS + 15,
        what="the normal worker to reclaim the dead skewed worker's job",
    )
    reclaimed = events(job, EventKind.RECLAIMED)[0]
    assert reclaimed.actor == "w-normal"
    assert f"resuming from {killed_at} processed" in reclaimed.detail
    # Reclaimed once the lease expired by the database's clock (this host's), not 10 minutes
    # off: the reclaim's event is stamped by the normal worker.
    waited = (reclaimed.at - last_beat).total_seconds()
    assert LEASE_SECONDS - 0.1 <= waited < LEASE_SECONDS + 15, waited
    wait_until(lambda: row(job).is_finished, timeout=40, what="the job to end")
    fleet.stop()
    job = row(job)
    assert job.status == JobStatus.COMPLETED, fleet.tail()
    assert (job.processed_docs, job.failed_docs) == (DOCS, 0)
    assert_clean(processes, job)
