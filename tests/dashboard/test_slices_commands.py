"""Sliced jobs on the command line (`reindex start|status|verify`, through call_command), and the
sweeps that end a cancel no worker is left to confirm: `reindex status`, and the web process's
relay and hub (dashboard.relay.OrphanSweep)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dashboard.relay import OrphanSweep
from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.dashboard.slices import MakeJob, run_slice, sliced_job

pytestmark = pytest.mark.django_db


def reindex(*args: str) -> str:
    out = StringIO()
    call_command("reindex", *args, stdout=out)
    return out.getvalue()


def test_start__takes_slices(make_corpus: Callable[..., Path]) -> None:
    make_corpus(10)
    job_id = int(reindex("start", "--source", "jsonl:docs.jsonl", "--slices", "4").split()[-1])
    assert ReindexJob.objects.get(pk=job_id).slices == 4


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_start__refuses_an_absurd_slice_count(make_corpus: Callable[..., Path], value: str) -> None:
    make_corpus(3)
    with pytest.raises(CommandError, match="slices"):
        reindex("start", "--source", "jsonl:docs.jsonl", "--slices", value)
    assert not ReindexJob.objects.exists()


def test_start__help_gives_the_bounds_of_slices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        call_command("reindex", "start", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "--slices SLICES" in text and "(1 to 64)" in text


def test_status_json__lists_top_level_jobs_with_their_slices(make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "worker-a", processed=1)
    plain = make_job()
    rows = json.loads(reindex("status", "--json"))
    assert [row["id"] for row in rows] == [plain.pk, job.pk]
    sliced = rows[1]
    assert sliced["slice_count"] == 4
    assert [(s["slice_number"], s["status"], s["worker"]) for s in sliced["slices"]] == [
        (1, "running", "worker-a"),
        (2, "pending", ""),
        (3, "pending", ""),
        (4, "pending", ""),
    ]
    assert all("waiting_for" in row for row in rows)
    one = json.loads(reindex("status", str(slices[0].pk), "--json"))
    assert (one["slice_of"], one["slice_number"]) == (job.pk, 1)


def test_status__text_sums_up_the_slices(make_job: MakeJob) -> None:
    job, slices = sliced_job(make_job)
    run_slice(slices[0], "worker-a")
    out = reindex("status")
    (line,) = [line for line in out.splitlines() if line.split()[0] == str(job.pk)]
    assert "4 slices: 1 running, 3 pending" in line
    assert f"slice 1 of job {job.pk}" in reindex("status", str(slices[0].pk))


def _orphaned_sliced_job(make_job: MakeJob) -> tuple[ReindexJob, list[ReindexJob]]:
    """A sliced job asked to cancel whose slices' workers all died, its lease expired too."""
    job, slices = sliced_job(make_job, slices=2)
    for n, slice_job in enumerate(slices):
        run_slice(slice_job, f"dead-{n}", heartbeat_age=600)
    job.request_cancel("operator")
    ReindexJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    return job, slices


def test_status__ends_a_cancel_no_worker_is_left_to_confirm(make_job: MakeJob) -> None:
    job, slices = _orphaned_sliced_job(make_job)
    row = json.loads(reindex("status", str(job.pk), "--json"))
    assert row["status"] == "cancelled"
    assert {s["status"] for s in row["slices"]} == {"cancelled"}
    event = job.events.filter(kind=EventKind.CANCELLED).get()
    assert "without a worker" in event.detail and event.actor == "cli"


def test_status__leaves_a_cancel_whose_worker_lives(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING, cancelling=True, heartbeat_age=1)
    assert json.loads(reindex("status", str(job.pk), "--json"))["label"] == "cancelling"


# The sweep reads through channels' database thread: the rows must be committed.
@pytest.mark.django_db(transaction=True)
def test_relay_sweep__ends_orphaned_cancels_at_most_every_interval(make_job: MakeJob) -> None:
    job, slices = _orphaned_sliced_job(make_job)
    sweep = OrphanSweep(interval=60)
    ended = asyncio.run(sweep.run_if_due())
    assert set(ended) == {job.pk, *(s.pk for s in slices)}
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.events.filter(kind=EventKind.CANCELLED, actor="dashboard").exists()
    # Not due again within its interval: no query, nothing done.
    other = make_job(status=JobStatus.RUNNING, cancelling=True, heartbeat_age=600)
    assert asyncio.run(sweep.run_if_due()) == []
    assert ReindexJob.objects.get(pk=other.pk).status == JobStatus.RUNNING


# -- verify, after a real run ----------------------------------------------------------------


@pytest.fixture
def run_worker(transactional_db: None) -> Callable[[], None]:
    def run() -> None:
        call_command("reindex_worker", "--burst", "--worker-id", "slices-tests")

    return run


def test_verify__a_clean_sliced_job_has_nothing_missing_or_duplicated(
    make_job: MakeJob, make_corpus: Callable[..., Path], run_worker: Callable[[], None]
) -> None:
    make_corpus(40)
    job = make_job(slices=4, batch_size=5)
    run_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert ReindexJob.objects.filter(parent=job).count() == 4
    report = json.loads(reindex("verify", str(job.pk), "--json"))
    assert (report["source_docs"], report["in_store"]) == (40, 40)
    assert (report["missing"], report["duplicates"], report["failed_recorded"]) == (0, 0, 0)


def test_verify__counts_the_failures_of_every_slice(
    make_job: MakeJob, make_corpus: Callable[..., Path], run_worker: Callable[[], None]
) -> None:
    make_corpus(40)
    # One poisoned document near each end: two different slices record them.
    job = make_job(
        slices=4,
        batch_size=5,
        store="flaky(sqlite-vec,poison=doc-1,poison=doc-38)",
        max_failed_ratio=1.0,
    )
    run_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.failed_docs == 2, job.error
    holders = set(
        job.slice_jobs.filter(failures__isnull=False).values_list("slice_number", flat=True)
    )
    assert len(holders) == 2
    out = StringIO()
    call_command("reindex", "verify", str(job.pk), "--json", stdout=out)
    report: dict[str, Any] = json.loads(out.getvalue())
    assert (report["failed_recorded"], report["missing"], report["duplicates"]) == (2, 0, 0)
    assert report["in_store"] == 38
