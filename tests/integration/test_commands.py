"""`manage.py reindex ...`: output contracts, exit codes, and bad input on every action."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import execute_from_command_line

from reindexer.models import BatchFailure, JobEvent, JobStatus, ReindexJob
from tests.contracts import STATUS_FIELDS
from tests.integration.conftest import Processes

# In-process runs go through run_from_argv, which closes every connection when it ends.
pytestmark = pytest.mark.django_db(transaction=True)

VERIFY_FIELDS = {
    "source_docs",
    "in_store",
    "failed_recorded",
    "missing",
    "duplicates",
    "missing_sample",
}

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `manage.py ARGV...` in this process, the way the real entry point does."""

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            execute_from_command_line(["manage.py", *argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def database_state() -> tuple[list[dict[str, Any]], int, int]:
    return (
        [dict(row) for row in ReindexJob.objects.order_by("pk").values()],
        JobEvent.objects.count(),
        BatchFailure.objects.count(),
    )


@pytest.fixture
def finished_job(
    make_corpus: Callable[..., Path], cli: Cli, run_burst_worker: Callable[..., None]
) -> ReindexJob:
    make_corpus(30, extra_lines=["oops"])
    code, out, _ = cli("reindex", "start", "--source", "jsonl:docs.jsonl", "--batch-size", "7")
    assert code == 0
    run_burst_worker()
    return ReindexJob.objects.get(pk=int(out.splitlines()[-1]))


def test_start__prints_the_new_job_id_last_and_queues_it(
    make_corpus: Callable[..., Path], cli: Cli
) -> None:
    make_corpus(5)
    code, out, err = cli(
        "reindex", "start", "--source", "jsonl:docs.jsonl", "--batch-size", "2",
        "--max-retries", "5", "--collection", "mine", "--name", "nightly",
    )  # fmt: skip
    assert (code, err) == (0, "")
    job = ReindexJob.objects.get(pk=int(out.strip().splitlines()[-1]))
    assert (job.status, job.name, job.batch_size, job.max_retries, job.collection) == (
        JobStatus.PENDING,
        "nightly",
        2,
        5,
        "mine",
    )
    assert list(job.events.values_list("kind", flat=True)) == ["created"]


def test_status_json__one_job_has_every_contract_field(finished_job: ReindexJob, cli: Cli) -> None:
    code, out, err = cli("reindex", "status", str(finished_job.pk), "--json")
    assert (code, err) == (0, "")
    row = json.loads(out)
    assert set(row) >= STATUS_FIELDS
    assert row["id"] == finished_job.pk
    assert row["status"] == "completed"
    assert (row["total_docs"], row["processed_docs"], row["failed_docs"]) == (31, 31, 1)
    assert row["progress"] == 1.0
    assert row["batches_done"] == 5 and row["batches_failed"] == 1
    assert row["cancel_requested"] is False
    assert row["eta_seconds"] is None
    assert row["finished_at"] is not None and row["started_at"] is not None


def test_status_json__without_an_id_lists_every_job_as_an_array(
    finished_job: ReindexJob, make_job: Callable[..., ReindexJob], cli: Cli
) -> None:
    pending = make_job("jsonl:docs.jsonl")
    code, out, _ = cli("reindex", "status", "--json")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list)
    assert {r["id"] for r in rows} == {finished_job.pk, pending.pk}
    for row in rows:
        assert set(row) >= STATUS_FIELDS
    assert next(r for r in rows if r["id"] == pending.pk)["progress"] == 0


def test_status_json__with_no_jobs_is_an_empty_array(cli: Cli) -> None:
    code, out, _ = cli("reindex", "status", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_status__text_shows_one_line_per_job(finished_job: ReindexJob, cli: Cli) -> None:
    code, out, _ = cli("reindex", "status")
    assert code == 0
    assert "completed" in out and "31/31 processed, 1 failed" in out


def test_watch__finished_job_prints_the_bar_and_exits_zero(
    finished_job: ReindexJob, cli: Cli
) -> None:
    code, out, err = cli("reindex", "watch", str(finished_job.pk))
    assert (code, err) == (0, "")
    assert "100%" in out and "31/31" in out
    assert out.strip().splitlines()[-1] == f"job {finished_job.pk} completed with errors"


def test_verify_json__reports_the_contract_fields(finished_job: ReindexJob, cli: Cli) -> None:
    code, out, _ = cli("reindex", "verify", str(finished_job.pk), "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) >= VERIFY_FIELDS
    assert (report["source_docs"], report["in_store"], report["missing"], report["duplicates"]) == (
        30,
        30,
        0,
        0,
    )


def test_cancel__pending_job_is_cancelled(
    make_job: Callable[..., ReindexJob], make_corpus: Callable[..., Path], cli: Cli
) -> None:
    job = make_job(make_corpus(3))
    code, out, _ = cli("reindex", "cancel", str(job.pk))
    assert code == 0 and "cancelled" in out
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.fixture
def job_with_store_failure(
    make_corpus: Callable[..., Path], cli: Cli, run_burst_worker: Callable[..., None]
) -> ReindexJob:
    """A finished job with one document the store refused (retryable) and one malformed line."""
    make_corpus(30, extra_lines=["oops"])
    code, out, _ = cli(
        "reindex", "start", "--source", "jsonl:docs.jsonl", "--batch-size", "7",
        "--store", "flaky(sqlite-vec,poison=doc-3)",
    )  # fmt: skip
    assert code == 0
    run_burst_worker()
    return ReindexJob.objects.get(pk=int(out.splitlines()[-1]))


def test_retry_failed__prints_the_retry_job_id_last(
    job_with_store_failure: ReindexJob, cli: Cli
) -> None:
    finished_job = job_with_store_failure
    code, out, _ = cli("reindex", "retry-failed", str(finished_job.pk))
    assert code == 0
    retry = ReindexJob.objects.get(pk=int(out.splitlines()[-1]))
    assert retry.retry_of_id == finished_job.pk and retry.status == JobStatus.PENDING


def test_resume__failed_job_is_queued_again_from_its_checkpoint(
    make_job: Callable[..., ReindexJob], cli: Cli
) -> None:
    job = make_job(status=JobStatus.FAILED, processed=3, failed=1)
    code, out, err = cli("reindex", "resume", str(job.pk))
    assert (code, err) == (0, "")
    assert out.strip() == f"job {job.pk}: queued to resume from 3 processed documents"
    job.refresh_from_db()
    assert (job.status, job.processed_docs, job.failed_docs) == (JobStatus.PENDING, 3, 1)
    event = job.events.get(kind="resumed")
    assert (event.actor, event.detail) == (
        "cli",
        "resuming from 3 processed; it had failed: too many failures",
    )


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.PENDING])
def test_resume__of_a_job_that_did_not_fail_exits_1_with_one_line_and_changes_nothing(
    make_job: Callable[..., ReindexJob], cli: Cli, status: str
) -> None:
    job = make_job(status=status)
    before = database_state()
    code, out, err = cli("reindex", "resume", str(job.pk))
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        f"CommandError: job {job.pk} cannot be resumed: it is {status}; only a failed job can be"
    ]
    assert database_state() == before


def test_help__lists_the_resume_action(cli: Cli) -> None:
    code, out, _ = cli("reindex", "--help")
    assert code == 0
    assert "resume" in out and "continue a failed job from its checkpoint" in out


BAD_INPUT: list[tuple[str, list[str], str]] = [
    ("status of an unknown job", ["status", "999"], "no job with id 999"),
    ("status json of an unknown job", ["status", "999", "--json"], "no job with id 999"),
    ("cancel of an unknown job", ["cancel", "999"], "no job with id 999"),
    ("retry-failed of an unknown job", ["retry-failed", "999"], "no job with id 999"),
    ("resume of an unknown job", ["resume", "999"], "no job with id 999"),
    ("resume with a non-numeric id", ["resume", "abc"], "job id must be a whole number"),
    ("verify of an unknown job", ["verify", "999", "--json"], "no job with id 999"),
    ("watch of an unknown job", ["watch", "999"], "no job with id 999"),
    ("status with a non-numeric id", ["status", "abc"], "job id must be a whole number"),
    ("cancel with a non-numeric id", ["cancel", "abc"], "job id must be a whole number"),
    ("retry-failed with a zero id", ["retry-failed", "0"], "positive whole number"),
    ("verify with a huge id", ["verify", "1" * 25, "--json"], "positive whole number"),
    ("watch with a negative id", ["watch", "-3"], "job_id"),
    ("no action", [], "required: ACTION"),
    ("unknown action", ["explode"], "invalid choice"),
    ("unknown option", ["status", "--bogus"], "unrecognized arguments: --bogus"),
    ("start without a source", ["start"], "--source"),
    (
        "unknown embedder",
        ["start", "--source", "jsonl:docs.jsonl", "--embedder", "word2vec"],
        "unknown embedder 'word2vec'",
    ),
    (
        "unknown store",
        ["start", "--source", "jsonl:docs.jsonl", "--store", "chroma"],
        "unknown store 'chroma'",
    ),
    (
        "bad flaky option",
        ["start", "--source", "jsonl:docs.jsonl", "--store", "flaky(sqlite-vec,transient=2)"],
        "between 0 and 1",
    ),
    (
        "batch size 0",
        ["start", "--source", "jsonl:docs.jsonl", "--batch-size", "0"],
        "between 1 and 10000, got 0",
    ),
    (
        "batch size 10001",
        ["start", "--source", "jsonl:docs.jsonl", "--batch-size", "10001"],
        "between 1 and 10000, got 10001",
    ),
    (
        "batch size not a number",
        ["start", "--source", "jsonl:docs.jsonl", "--batch-size", "lots"],
        "whole number, got 'lots'",
    ),
    (
        "batch size a fraction",
        ["start", "--source", "jsonl:docs.jsonl", "--batch-size", "2.5"],
        "whole number, got '2.5'",
    ),
    (
        "negative max retries",
        ["start", "--source", "jsonl:docs.jsonl", "--max-retries", "-1"],
        "max retries must be between 0 and 20, got -1",
    ),
    (
        "too many max retries",
        ["start", "--source", "jsonl:docs.jsonl", "--max-retries", "21"],
        "max retries must be between 0 and 20",
    ),
    (
        "failed ratio above one",
        ["start", "--source", "jsonl:docs.jsonl", "--max-failed-ratio", "1.5"],
        "max failed ratio must be between 0 and 1, got 1.5",
    ),
    (
        "failed ratio nan",
        ["start", "--source", "jsonl:docs.jsonl", "--max-failed-ratio", "nan"],
        "max_failed_ratio must be a number, got nan",
    ),
    (
        "bad collection",
        ["start", "--source", "jsonl:docs.jsonl", "--collection", "a b"],
        "collection 'a b'",
    ),
    ("missing file", ["start", "--source", "jsonl:missing.jsonl"], "source file not found"),
    (
        "path outside the roots",
        ["start", "--source", "jsonl:/etc/passwd"],
        "outside the allowed roots",
    ),
    ("path with dot dot", ["start", "--source", "jsonl:../docs.jsonl"], "must not contain '..'"),
    ("unknown source kind", ["start", "--source", "csv:docs.csv"], "unknown source kind 'csv'"),
    ("directory that is a file", ["start", "--source", "directory:docs.jsonl"], "not a folder"),
]


@pytest.mark.parametrize(
    ("argv", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input__exits_1_with_one_line_on_stderr_and_changes_nothing(
    finished_job: ReindexJob, cli: Cli, argv: list[str], message: str
) -> None:
    before = database_state()
    code, out, err = cli("reindex", *argv)
    assert code == 1, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert database_state() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cancel"], "cannot be cancelled: it is completed"),
        (["retry-failed", "--twice"], "already queued"),
    ],
)
def test_bad_input__invalid_transitions_exit_1_with_one_line(
    job_with_store_failure: ReindexJob, cli: Cli, argv: list[str], message: str
) -> None:
    finished_job = job_with_store_failure
    if argv[-1] == "--twice":
        assert cli("reindex", "retry-failed", str(finished_job.pk))[0] == 0
        argv = argv[:-1]
    before = database_state()
    code, _, err = cli("reindex", *argv, str(finished_job.pk))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err
    assert database_state() == before


def test_bad_input__retry_failed_of_a_clean_job_says_there_is_nothing_to_retry(
    make_corpus: Callable[..., Path],
    make_job: Callable[..., ReindexJob],
    run_burst_worker: Callable[..., None],
    cli: Cli,
) -> None:
    job = make_job(make_corpus(3))
    run_burst_worker()
    code, _, err = cli("reindex", "retry-failed", str(job.pk))
    assert code == 1 and "no unresolved failures" in err


def test_bad_input__worker_with_an_empty_id_exits_1_with_one_line(cli: Cli) -> None:
    code, _, err = cli("reindex_worker", "--worker-id", "")
    assert code == 1
    assert err.strip().splitlines() == [
        "manage.py reindex_worker: error: argument --worker-id: "
        "worker id must be 1-200 printable characters"
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cli_process__exit_codes_and_stderr_match_the_contract(
    make_corpus: Callable[..., Path], processes: Processes
) -> None:
    make_corpus(4)
    started = processes.run("reindex", "start", "--source", "jsonl:docs.jsonl", "--batch-size", "2")
    assert started.returncode == 0, started.stderr
    job_id = int(started.stdout.splitlines()[-1])

    status = processes.run("reindex", "status", str(job_id), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["status"] == "pending"

    for argv, message in [
        (["status", "12345"], "CommandError: no job with id 12345"),
        (["start", "--source", "jsonl:docs.jsonl", "--batch-size", "0"], "between 1 and 10000"),
    ]:
        bad = processes.run("reindex", *argv)
        assert bad.returncode == 1
        assert bad.stdout == ""
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], bad.stderr
    assert ReindexJob.objects.count() == 1
