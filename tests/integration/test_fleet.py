"""A fleet of worker subprocesses on one queue: every job claimed once, and one writer per
collection, plain and sliced jobs alike, as the database enforces it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.browser.servers import RedisServer
from tests.integration.conftest import Processes, claimed, wait_until
from tests.integration.fleet import Fleet, clean, events, kinds, row, slices_of, timeline

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]


def status_json(processes: Processes) -> list[dict[str, Any]]:
    done = processes.run("reindex", "status", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_four_workers__forty_jobs_each_claimed_once_all_complete_and_verify_clean(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes, redis_server: RedisServer
) -> None:
    corpus = make_corpus(40)
    own = [make_job(corpus, batch_size=10, collection=f"c{i}") for i in range(34)]
    # Six on one collection, one writer at a time; same documents, so each verifies clean.
    shared = [make_job(corpus, batch_size=10, collection="shared") for _ in range(6)]
    fleet = Fleet(processes, {"REDIS_URL": redis_server.url, "REINDEXER_HEARTBEAT_SECONDS": "0.5"})
    for n in range(4):
        fleet.start(f"w{n}")
    jobs = own + shared
    wait_until(
        lambda: ReindexJob.objects.finished().count() == len(jobs),
        timeout=60,
        interval=0.2,
        what="every job to end",
    )
    fleet.stop()

    claimers: set[str] = set()
    for job in jobs:
        job = row(job)
        assert job.status == JobStatus.COMPLETED, (job.pk, job.error, fleet.tail())
        assert (job.processed_docs, job.failed_docs) == (40, 0)
        claims = events(job, EventKind.CLAIMED)
        assert len(claims) == 1 and EventKind.RECLAIMED not in kinds(job), kinds(job)
        claimers.add(claims[0].actor)
        report = clean(job)
        assert (report["in_store"], report["missing"], report["duplicates"]) == (40, 0, 0), report
    assert claimers == {f"w{n}" for n in range(4)}, "a worker claimed nothing"
    # The shared collection's writers one after another, never two at once.
    runs = sorted((row(j).started_at, row(j).finished_at) for j in shared)
    for (_, ended), (started, _) in zip(runs, runs[1:], strict=False):
        assert ended is not None and started is not None and started >= ended, runs


def test_one_writer__the_second_job_waits_for_the_first_then_starts_after_it_ends(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    corpus = make_corpus(600)
    store = "flaky(sqlite-vec,latency=150)"  # about 9 s of writing for each job
    first = make_job(corpus, batch_size=10, store=store, collection="one")
    second = make_job(corpus, batch_size=10, store=store, collection="one")
    fleet = Fleet(processes)
    fleet.start("w1")
    fleet.start("w2")
    wait_until(lambda: row(first).processed_docs >= 20, what="the first job under way")

    rows = {r["id"]: r for r in status_json(processes)}
    # One snapshot, taken by the command: the first job running, the second waiting for it.
    assert rows[first.pk]["status"] == "running", "the first job ended before the check"
    assert rows[second.pk]["status"] == "pending"
    assert rows[second.pk]["waiting_for"] == first.pk
    # Enforced by the database, not by the workers: a claim by hand is refused too.
    with pytest.raises(IntegrityError), transaction.atomic():
        claimed(row(second), "w-intruder")

    wait_until(lambda: row(second).is_finished, timeout=60, what="the second job to end")
    fleet.stop()
    a, b = row(first), row(second)
    assert (a.status, b.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED), fleet.tail()
    assert a.finished_at is not None and b.started_at is not None
    assert b.started_at >= a.finished_at
    for job in (a, b):
        assert clean(job)["missing"] == clean(job)["duplicates"] == 0


@pytest.mark.parametrize("sliced_first", [True, False], ids=["sliced-first", "plain-first"])
def test_one_writer__a_sliced_job_and_a_plain_job_on_one_collection_never_write_together(
    sliced_first: bool, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    corpus = make_corpus(600)
    # About 5 s of writing for the sliced job (20 batches a slice), 7 s for the plain one.
    store = "flaky(sqlite-vec,latency=250)"
    sliced_spec = {"batch_size": 10, "store": store, "collection": "mixed", "slices": 3}
    plain_spec = {"batch_size": 20, "store": store, "collection": "mixed"}
    if sliced_first:
        sliced = make_job(corpus, **sliced_spec)
        plain = make_job(corpus, **plain_spec)
        first, second = sliced, plain
    else:
        plain = make_job(corpus, **plain_spec)
        sliced = make_job(corpus, **sliced_spec)
        first, second = plain, sliced
    fleet = Fleet(processes)
    for n in range(4):
        fleet.start(f"w{n}")
    wait_until(lambda: row(first).processed_docs >= 40, what="the first job under way")

    rows = {r["id"]: r for r in status_json(processes)}
    assert rows[first.pk]["status"] == "running", "the first job ended before the check"
    assert rows[second.pk]["status"] == "pending"
    # The job that holds the collection, as operators queued it: not one of its slices.
    assert rows[second.pk]["waiting_for"] == first.pk, rows[second.pk]

    wait_until(lambda: row(second).is_finished, timeout=60, what="the second job to end")
    fleet.stop()
    assert row(first).status == row(second).status == JobStatus.COMPLETED, timeline(row(sliced))
    # Every write of one (the sliced job's slices included) ends before any of the other's.
    writers_of = {
        sliced.pk: [row(sliced), *slices_of(sliced)],
        plain.pk: [row(plain)],
    }
    first_end = max(j.finished_at for j in writers_of[first.pk] if j.finished_at)
    second_start = min(j.started_at for j in writers_of[second.pk] if j.started_at)
    assert second_start >= first_end
    for job in (sliced, plain):
        report = clean(job)
        assert (report["in_store"], report["missing"], report["duplicates"]) == (600, 0, 0)
