"""`manage.py reindex throttle JOB_ID RATE`: sets, changes and lifts the limit, one-line errors
with exit code 1, and `reindex status` shows the limit beside the rate."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from reindexer.models import EventKind, JobEvent, JobStatus, ReindexJob
from tests.integration.test_commands import Cli, cli  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]


def details(job: ReindexJob) -> list[tuple[str, str]]:
    events = JobEvent.objects.filter(job=job, kind=EventKind.THROTTLED).order_by("at", "id")
    return [(e.actor, e.detail) for e in events]


def limit_of(job: ReindexJob) -> float | None:
    return ReindexJob.objects.get(pk=job.pk).max_docs_per_second


def test_throttle__sets_changes_and_lifts(cli: Cli, make_job: MakeJob) -> None:  # noqa: F811
    job = make_job(status=JobStatus.RUNNING)
    assert cli("reindex", "throttle", str(job.pk), "200") == (
        0,
        f"job {job.pk}: limit set to 200 docs/s\n",
        "",
    )
    assert limit_of(job) == 200
    code, out, _ = cli("reindex", "throttle", str(job.pk), "12.5")
    assert (code, out) == (0, f"job {job.pk}: limit changed from 200 to 12.5 docs/s\n")
    code, out, _ = cli("reindex", "throttle", str(job.pk), "0")
    assert (code, out) == (0, f"job {job.pk}: limit lifted\n")
    assert limit_of(job) is None
    assert details(job) == [
        ("cli", "limit set to 200 docs/s"),
        ("cli", "limit changed from 200 to 12.5 docs/s"),
        ("cli", "limit lifted"),
    ]


def test_throttle__the_same_limit_says_nothing_changed(cli: Cli, make_job: MakeJob) -> None:  # noqa: F811
    job = make_job(max_docs_per_second=50)
    code, out, _ = cli("reindex", "throttle", str(job.pk), "50")
    assert (code, out) == (0, f"job {job.pk}: limit already 50 docs/s; nothing changed\n")
    assert details(job) == []


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("-1", "the rate limit must be between 0 and 1,000,000 documents per second"),
        ("abc", "the rate limit must be a number"),
        ("1e9", "got 1e+09"),
        ("nan", "must be a finite number, got nan"),
        ("", "the rate limit must be a number"),
    ],
)
def test_throttle__a_bad_rate_is_one_line_and_exit_1(
    cli: Cli,  # noqa: F811
    make_job: MakeJob,
    rate: str,
    expected: str,
) -> None:
    job = make_job(max_docs_per_second=5)
    code, out, err = cli("reindex", "throttle", str(job.pk), rate)
    assert (code, out) == (1, "")
    assert expected in err and err.count("\n") == 1, err
    assert limit_of(job) == 5


def test_throttle__a_finished_or_unknown_job_is_exit_1(cli: Cli, make_job: MakeJob) -> None:  # noqa: F811
    done = make_job(status=JobStatus.COMPLETED)
    code, _, err = cli("reindex", "throttle", str(done.pk), "10")
    assert code == 1 and err.count("\n") == 1
    assert f"job {done.pk} is completed: only a pending or running job's rate limit" in err
    code, _, err = cli("reindex", "throttle", "999999", "10")
    assert (code, err.count("\n")) == (1, 1) and "no job with id 999999" in err
    code, _, err = cli("reindex", "throttle", str(done.pk))
    assert (code, err.count("\n")) == (1, 1) and "RATE" in err


def test_throttle__from_a_real_process(
    make_job: MakeJob, manage: list[str], worker_env: dict[str, str]
) -> None:
    job = make_job()
    ok = subprocess.run(
        [*manage, "reindex", "throttle", str(job.pk), "75"],
        env=worker_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0,
        f"job {job.pk}: limit set to 75 docs/s\n",
        "",
    )
    bad = subprocess.run(
        [*manage, "reindex", "throttle", str(job.pk), "-5"],
        env=worker_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "between 0 and 1,000,000" in bad.stderr
    assert limit_of(job) == 75


def test_status__shows_the_limit_beside_the_rate(cli: Cli, make_job: MakeJob) -> None:  # noqa: F811
    limited = make_job(status=JobStatus.RUNNING, processed=2, max_docs_per_second=200)
    free = make_job(status=JobStatus.RUNNING, processed=2, collection="other")
    code, out, _ = cli("reindex", "status", str(limited.pk))
    assert code == 0
    assert "docs/s (limit 200)" in out
    _, out, _ = cli("reindex", "status", str(free.pk))
    assert "limit" not in out
    _, out, _ = cli("reindex", "status", str(limited.pk), "--json")
    assert json.loads(out)["max_docs_per_second"] == 200
