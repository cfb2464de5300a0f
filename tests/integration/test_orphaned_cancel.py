"""A cancel that no worker is left to confirm: the job's worker was SIGKILLed, an operator asked
to cancel, and no other worker runs. Once the lease expires, `reindex status` (which sweeps for
such jobs) ends it cancelled, with an event that says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now

from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.stores import store_backend
from tests.integration.conftest import Processes, wait_until
from tests.integration.fleet import Fleet, events, kinds, row, run_with, slices_of, timeline

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]

LEASE_SECONDS = 3.0
SHORT_LEASE = {"REINDEXER_LEASE_SECONDS": str(LEASE_SECONDS), "REINDEXER_HEARTBEAT_SECONDS": "1"}
SLOW = {"batch_size": 10, "store": "flaky(sqlite-vec,latency=200)"}


def lease_expired(job: ReindexJob) -> bool:
    """Whether `job`'s lease expired by the job database's clock."""
    lease = timedelta(seconds=LEASE_SECONDS)
    return ReindexJob.objects.filter(pk=job.pk, heartbeat_at__lt=Now() - lease).exists()


def status(processes: Processes, job: ReindexJob) -> dict[str, Any]:
    """`reindex status JOB --json`, run with the workers' lease (it sweeps with it)."""
    done = run_with(processes, SHORT_LEASE, "reindex", "status", str(job.pk), "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_cancelled_without_a_worker(job: ReindexJob, worker: str) -> None:
    job = row(job)
    assert job.status == JobStatus.CANCELLED, timeline(job)
    assert job.lease_token is None and job.finished_at is not None
    last = events(job)[-1]
    assert last.kind == EventKind.CANCELLED, kinds(job)
    assert last.actor == "cli"
    assert last.detail.startswith("cancelled without a worker: "), last.detail
    assert f"lease of {worker} expired" in last.detail, last.detail


def test_orphaned_cancel__a_killed_workers_job_is_cancelled_by_status_after_the_lease(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(400), collection="orphan", **SLOW)
    fleet = Fleet(processes, SHORT_LEASE)
    fleet.start("w-doomed")
    wait_until(lambda: row(job).processed_docs >= 20, what="the job under way")
    fleet.kill("w-doomed")
    killed_at = row(job).processed_docs

    asked = processes.run("reindex", "cancel", str(job.pk))
    assert asked.returncode == 0, asked.stderr
    assert row(job).is_cancelling
    wait_until(lambda: lease_expired(job), timeout=LEASE_SECONDS + 10, what="the lease to expire")
    report = status(processes, job)

    assert report["status"] == "cancelled", report
    assert_cancelled_without_a_worker(job, "worker w-doomed")
    assert row(job).processed_docs == killed_at
    assert kinds(job)[-2:] == ["cancel_requested", "cancelled"]


def test_orphaned_cancel__a_swap_job_drops_its_partial_collection_and_leaves_the_alias(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(400), collection="orphan_swap", mode="swap", **SLOW)
    built = f"orphan_swap__{job.pk}"
    fleet = Fleet(processes, SHORT_LEASE)
    fleet.start("w-doomed")
    wait_until(lambda: row(job).processed_docs >= 20, what="the swap job under way")
    fleet.kill("w-doomed")
    backend = store_backend("sqlite-vec")
    assert backend.exists(built)

    asked = processes.run("reindex", "cancel", str(job.pk))
    assert asked.returncode == 0, asked.stderr
    wait_until(lambda: lease_expired(job), timeout=LEASE_SECONDS + 10, what="the lease to expire")
    assert status(processes, job)["status"] == "cancelled"

    assert not backend.exists(built), timeline(job)
    assert backend.alias_target("orphan_swap") is None
    dropped = [e.detail for e in events(job) if e.kind == EventKind.DISCARDED]
    assert dropped == [
        f"dropped its collection {built} (cancelled without a worker); alias orphan_swap left"
        " as it was"
    ], timeline(job)


def test_orphaned_cancel__a_sliced_job_whose_slice_workers_all_died_ends_cancelled(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(400), slices=2, collection="orphan-sliced", **SLOW)
    fleet = Fleet(processes, SHORT_LEASE)
    fleet.start("w1")
    fleet.start("w2")

    def both_running() -> bool:
        parts = slices_of(job)
        return len(parts) == 2 and all(
            s.status == JobStatus.RUNNING and s.processed_docs >= 10 for s in parts
        )

    wait_until(both_running, what="both slices under way")
    fleet.kill("w1")
    fleet.kill("w2")
    workers = {s.pk: s.worker for s in slices_of(job)}

    asked = processes.run("reindex", "cancel", str(job.pk))
    assert asked.returncode == 0, asked.stderr
    parts = slices_of(job)
    assert row(job).is_cancelling and all(s.is_cancelling for s in parts), timeline(job)
    wait_until(
        lambda: all(lease_expired(j) for j in [job, *parts]),
        timeout=LEASE_SECONDS + 10,
        what="the leases to expire",
    )
    report = status(processes, job)

    assert report["status"] == "cancelled", (report, timeline(job))
    for part in slices_of(job):
        assert_cancelled_without_a_worker(part, f"worker {workers[part.pk]}")
    # The sliced job itself had no worker (its slices ran it), and says so.
    assert_cancelled_without_a_worker(job, "no worker")
    assert row(job).processed_docs == sum(s.processed_docs for s in slices_of(job))
