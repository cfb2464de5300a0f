"""`reindex verify` exits 1 when anything is missing or duplicated, after printing its report, so
that a script can rely on the exit code; `status --json` names the state as the dashboard does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import execute_from_command_line

from reindexer.models import JobStatus, ReindexJob
from reindexer.verify import verify_problems
from tests.integration.test_verify_gaps import append_lines, completed_job, new_doc

# In-process runs go through run_from_argv, which closes every connection when it ends.
pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        execute_from_command_line(["manage.py", "reindex", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def verified(
    make_corpus: Callable[..., Path], make_job: MakeJob, run_burst_worker: Callable[..., None]
) -> tuple[ReindexJob, Path]:
    corpus = make_corpus(12)
    return completed_job(make_job, run_burst_worker, corpus), corpus


def test_verify__a_clean_job_exits_0_with_nothing_on_stderr(
    verified: tuple[ReindexJob, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    job, _ = verified
    code, out, err = run_cli(capsys, "verify", str(job.pk), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["missing"] == 0


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_verify__missing_documents_print_the_report_then_exit_1_with_one_line(
    verified: tuple[ReindexJob, Path], capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    job, corpus = verified
    append_lines(corpus, [new_doc("late-1"), new_doc("late-2")])
    code, out, err = run_cli(capsys, "verify", str(job.pk), *(["--json"] if as_json else []))
    assert code == 1
    if as_json:
        assert json.loads(out)["missing_sample"] == ["late-1", "late-2"]
    else:
        assert "missing: 2" in out.splitlines()
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"job {job.pk} does not verify: 2 missing" in lines[0]


def test_verify_problems__names_missing_and_duplicated_ids() -> None:
    assert verify_problems({"missing": 0, "duplicates": 0}) == ""
    assert verify_problems({"missing": 3, "duplicates": 1}) == "3 missing, 1 duplicated"
    assert verify_problems({"missing": 0, "duplicates": 2}) == "2 duplicated"


def test_status_json__gives_the_dashboards_label(
    make_job: MakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(status="completed", processed=5, failed=2)
    assert job.status == JobStatus.COMPLETED
    code, out, _ = run_cli(capsys, "status", str(job.pk), "--json")
    assert code == 0
    row = json.loads(out)
    assert (row["status"], row["label"]) == ("completed", "completed with errors")
