"""A job whose workers keep dying is reclaimed at most 3 times without progress, then fails with
its story; progress in between resets the count. Real claims, real stale leases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from dashboard.partials import render_progress
from reindexer.engine import BatchCommitter
from reindexer.models import BATCH_COUNTERS, EventKind, JobStatus, ReindexJob
from reindexer.worker import claim_next
from tests.integration.conftest import LEASE, event_kinds

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]


def dies(job: ReindexJob) -> None:
    """The worker holding `job` stops beating, as a killed one would: its lease goes stale."""
    ReindexJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=LEASE * 2)
    )


def reclaimed_by(worker: str) -> tuple[ReindexJob, uuid.UUID] | None:
    return claim_next(worker, LEASE)


def progresses(job: ReindexJob, token: uuid.UUID, docs: int) -> None:
    """The worker commits a batch of `docs` documents, as the engine does."""
    increments = dict.fromkeys(BATCH_COUNTERS, 0) | {"processed_docs": docs, "batches_done": 1}
    BatchCommitter(job, token).commit_counts(job.batches_done + 1, increments, [], {"line": docs})


def test_stuck_job__fails_after_three_reclaims_without_progress_with_its_story(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job()
    assert reclaimed_by("w0") is not None
    for n in range(1, 4):
        dies(job)
        claimed = reclaimed_by(f"w{n}")
        assert claimed is not None, f"reclaim {n} was refused"
        job = claimed[0]
        assert job.reclaims_without_progress == n
        assert job.last_error.startswith(f"lease of w{n - 1} expired")
    dies(job)
    assert reclaimed_by("w4") is None  # the 4th reclaim without progress fails the job instead
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.last_error_at is not None
    assert (job.lease_token, job.finished_at is not None) == (None, True)
    assert job.error == (
        "stuck: reclaimed 3 times without progress at 0 processed; last error "
        f"(at {job.last_error_at.isoformat()}): lease of w2 expired; resuming from 0 processed"
    )
    assert event_kinds(job) == [
        EventKind.CREATED,
        EventKind.CLAIMED,
        EventKind.RECLAIMED,
        EventKind.RECLAIMED,
        EventKind.RECLAIMED,
        EventKind.FAILED,
    ]
    call_command("reindex", "status", str(job.pk), "--json")
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "failed"
    assert status["error"] == job.error
    assert status["last_error"] == "lease of w2 expired; resuming from 0 processed"
    assert status["last_error_at"] == job.last_error_at.isoformat()


def test_stuck_job__progress_between_reclaims_resets_the_count(make_job: MakeJob) -> None:
    job = make_job()
    claimed = reclaimed_by("w0")
    assert claimed is not None
    for n in range(1, 3):
        dies(job)
        claimed = reclaimed_by(f"w{n}")
        assert claimed is not None
    job, token = claimed
    assert job.reclaims_without_progress == 2
    progresses(job, token, 3)
    for n in range(3, 6):  # three more reclaims: the first found progress, so it does not count
        dies(job)
        claimed = reclaimed_by(f"w{n}")
        assert claimed is not None, f"reclaim {n} was refused"
        job = claimed[0]
    assert (job.status, job.reclaims_without_progress) == (JobStatus.RUNNING, 2)


def test_reclaimed_job__shows_its_last_error_in_status_while_it_runs(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job()
    assert reclaimed_by("w0") is not None
    dies(job)
    assert reclaimed_by("w1") is not None
    call_command("reindex", "status")
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    job.refresh_from_db()
    assert job.last_error_at is not None
    assert line.split()[1] == "running"
    assert line.endswith(
        f"  [last error at {job.last_error_at.isoformat()}: "
        "lease of w0 expired; resuming from 0 processed]"
    )


def test_progress_block__shows_the_last_error_escaped_while_the_job_runs(make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING)
    token = job.lease_token
    assert token is not None
    job.note_error(token, "batch 3 retried: TimeoutError: <script>x</script> timed out")
    html = render_progress(job)
    assert "<strong>Last error</strong>" in html
    assert "batch 3 retried: TimeoutError: &lt;script&gt;x&lt;/script&gt; timed out" in html
    assert "<script>x</script>" not in html


def test_progress_block__hides_a_last_error_that_only_repeats_the_final_error(
    make_job: MakeJob,
) -> None:
    job = make_job(status=JobStatus.FAILED)
    assert job.last_error == job.error == "too many failures"
    html = render_progress(job)
    assert "Last error" not in html
    assert "too many failures" in html
