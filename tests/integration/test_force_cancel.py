"""Force cancel: a running job whose worker stopped renewing its lease becomes cancelled without
it (the model, `reindex cancel --force`); a worker that comes back finds its lease gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import execute_from_command_line
from django.utils import timezone

from reindexer.engine import BatchCommitter
from reindexer.models import (
    BATCH_COUNTERS,
    EventKind,
    InvalidTransition,
    JobStatus,
    LeaseLost,
    ReindexJob,
)
from tests.integration.conftest import LEASE, claimed, snapshot

MakeJob = Callable[..., ReindexJob]
STALE = LEASE + 30


def make_stale(job: ReindexJob) -> None:
    """The worker stopped beating: its heartbeat is older than the lease."""
    ReindexJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=STALE)
    )
    job.refresh_from_db()


@pytest.mark.django_db
def test_force_cancel__stale_running_job_becomes_cancelled_with_an_event(
    pending: ReindexJob,
) -> None:
    claimed(pending, "w-gone")
    make_stale(pending)
    last_beat = pending.heartbeat_at
    assert last_beat is not None
    now = timezone.now()

    pending.force_cancel("operator", lease_seconds=LEASE)

    row = snapshot(pending)
    assert (row["status"], row["lease_token"]) == ("cancelled", None)
    assert now - timedelta(seconds=1) <= row["finished_at"] <= timezone.now() + timedelta(seconds=1)
    event = pending.events.get(kind=EventKind.CANCELLED)
    assert event.actor == "operator"
    assert event.detail == (
        f"force-cancelled: worker w-gone not responding since {last_beat.isoformat()}"
    )


@pytest.mark.django_db
def test_force_cancel__a_live_lease_is_refused_and_changes_nothing(pending: ReindexJob) -> None:
    claimed(pending, "w-alive")
    before = snapshot(pending)
    with pytest.raises(InvalidTransition, match="w-alive renewed its lease .* still responds"):
        pending.force_cancel("operator", lease_seconds=LEASE)
    assert snapshot(pending) == before
    assert not pending.events.filter(kind=EventKind.CANCELLED).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.COMPLETED])
def test_force_cancel__a_job_that_is_not_running_is_refused(make_job: MakeJob, status: str) -> None:
    job = make_job(status=status)
    with pytest.raises(InvalidTransition, match=f"cannot be force-cancelled: it is {status}"):
        job.force_cancel("operator", lease_seconds=LEASE)
    assert ReindexJob.objects.get(pk=job.pk).status == status


@pytest.mark.django_db
def test_force_cancel__the_orphaned_worker_coming_back_loses_every_fenced_write(
    pending: ReindexJob,
) -> None:
    token = claimed(pending, "w-orphan")
    committer = BatchCommitter(pending, token)  # built while the worker still held the lease
    make_stale(pending)
    pending.force_cancel("operator", lease_seconds=LEASE)
    after = snapshot(pending)

    with pytest.raises(LeaseLost):
        pending.heartbeat(token)
    with pytest.raises(LeaseLost):
        committer.commit_counts(1, dict.fromkeys(BATCH_COUNTERS, 1), [], {"line": 9})
    with pytest.raises(LeaseLost):
        pending.confirm_cancel(token, "w-orphan")
    assert snapshot(pending) == after


# -- the command line -------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        execute_from_command_line(["manage.py", "reindex", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.django_db(transaction=True)
def test_cli_cancel_force__cancels_a_job_whose_worker_is_gone(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    code, out, err = run_cli(capsys, "cancel", "--force", str(job.pk))
    assert (code, err) == (0, "")
    assert out.strip() == f"job {job.pk}: force-cancelled"
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_cli_cancel_force__exits_1_with_one_line_while_the_lease_is_live(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(status="running")
    code, out, err = run_cli(capsys, "cancel", "--force", str(job.pk))
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot be force-cancelled" in lines[0]
    assert ReindexJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_cli_cancel__on_a_stalled_job_says_its_worker_is_not_responding(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(status="running", heartbeat_age=STALE)
    code, out, _ = run_cli(capsys, "cancel", str(job.pk))
    assert code == 0
    assert "worker-test is not responding" in out
    assert f"reindex cancel --force {job.pk}" in out
