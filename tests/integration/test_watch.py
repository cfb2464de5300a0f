"""`reindex watch`: labelled figures, no ETA once the job has ended, and an exit code that says
whether the job completed."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from reindexer.models import JobStatus, ReindexJob

pytestmark = pytest.mark.django_db(transaction=True)

LABELS = ("processed ", "rate ", "failed ", "ETA ")


def watch(job: ReindexJob) -> str:
    out = io.StringIO()
    call_command("reindex", "watch", str(job.pk), stdout=out)
    return out.getvalue()


def bar_line(output: str, job: ReindexJob) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(f"#{job.pk} ")]
    return line


def test_watch__a_job_completed_with_errors_is_labelled_has_no_eta_and_exits_zero(
    make_corpus: Callable[..., Path],
    make_job: Callable[..., ReindexJob],
    run_burst_worker: Callable[..., None],
) -> None:
    job = make_job(make_corpus(20, extra_lines=["not json"]), batch_size=5)
    run_burst_worker()
    job.refresh_from_db()
    assert (job.status, job.failed_docs) == (JobStatus.COMPLETED, 1)

    output = watch(job)  # returns: exit code 0
    line = bar_line(output, job)
    assert all(label in line for label in LABELS), line
    assert "processed 21/21" in line and "failed 1" in line
    assert " ETA - " in line, line
    assert output.strip().splitlines()[-1] == f"job {job.pk} completed with errors"


def test_watch__a_job_cancelled_mid_run_shows_no_stale_eta_and_exits_one(
    make_corpus: Callable[..., Path],
    make_job: Callable[..., ReindexJob],
    run_burst_worker: Callable[..., None],
) -> None:
    # Its worker died with a cancel pending: the burst worker reclaims it, then confirms.
    job = make_job(
        make_corpus(40),
        status=JobStatus.RUNNING,
        cancelling=True,
        heartbeat_age=3600,
        total=40,
        processed=10,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED

    out = io.StringIO()
    with pytest.raises(CommandError, match=f"job {job.pk} ended cancelled, not completed") as ended:
        call_command("reindex", "watch", str(job.pk), stdout=out)
    assert ended.value.returncode == 1  # the exit code of `manage.py reindex watch`
    assert " ETA - " in bar_line(out.getvalue(), job)
    assert out.getvalue().strip().splitlines()[-1] == f"job {job.pk} cancelled"


def test_watch__a_failed_job_exits_one(
    make_corpus: Callable[..., Path],
    make_job: Callable[..., ReindexJob],
    run_burst_worker: Callable[..., None],
) -> None:
    corpus = make_corpus(20, extra_lines=["bad"] * 10)
    job = make_job(corpus, batch_size=5, max_failed_ratio=0.0)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED

    with pytest.raises(CommandError, match=f"job {job.pk} ended failed, not completed"):
        watch(job)
