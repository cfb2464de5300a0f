"""A real job records where each failing record is in its source, and the start of its text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.documents import MALFORMED_ERROR, PREVIEW_CHARS
from reindexer.models import BatchFailure, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db(transaction=True)

Corpus = Callable[..., Path]
MakeJob = Callable[..., ReindexJob]
Run = Callable[..., None]


def failures_by_first_id(job: ReindexJob) -> dict[str, BatchFailure]:
    return {f.doc_ids[0]: f for f in BatchFailure.objects.filter(job=job)}


def test_jsonl__a_poisoned_document_records_its_line_and_the_start_of_its_text(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(make_corpus(40), batch_size=8, store="flaky(sqlite-vec,poison=doc-17)")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    failure = BatchFailure.objects.get(job=job)
    assert failure.doc_ids == ["doc-17"]
    assert failure.locator == "line 18"  # doc-0 is on line 1
    assert failure.preview.startswith("document 17: ")


def test_jsonl__malformed_lines_record_their_line_and_its_start(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    long_text = "x" * (PREVIEW_CHARS * 3)
    extra = [
        "{not json at all",
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "doc-2", "text": "the same id again"}),
        json.dumps({"id": "long", "text": long_text, "metadata": "not an object"}),
    ]
    job = make_job(make_corpus(5, extra_lines=extra), total=None, max_failed_ratio=1.0)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    failures = failures_by_first_id(job)
    assert set(failures) == {"line 6", "no-text (line 7)", "doc-2 (line 8)", "long (line 9)"}
    assert all(f.error_type == MALFORMED_ERROR for f in failures.values())
    assert {key: f.locator for key, f in failures.items()} == {
        "line 6": "line 6",
        "no-text (line 7)": "line 7",
        "doc-2 (line 8)": "line 8",
        "long (line 9)": "line 9",
    }
    assert failures["line 6"].preview == "{not json at all"
    assert failures["no-text (line 7)"].preview == '{"id": "no-text"}'
    # A duplicate's raw line is gone by the time it is spotted: the text it carried stands in.
    assert failures["doc-2 (line 8)"].preview == "the same id again"
    long_preview = failures["long (line 9)"].preview
    assert len(long_preview) == PREVIEW_CHARS
    assert long_preview.startswith('{"id": "long", "text": "xxx')


def test_jsonl__a_line_that_is_not_utf8_shows_its_start_with_replacement_characters(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    path = data_dir / "bytes.jsonl"
    path.write_bytes(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\xe9"}\n')
    job = make_job("jsonl:bytes.jsonl", total=None, max_failed_ratio=1.0)
    run_burst_worker()
    failure = BatchFailure.objects.get(job=job)
    assert failure.locator == "line 2"
    assert failure.preview == '{"id": "b", "text": "caf\ufffd"}'


def test_jsonl__a_nul_in_the_failing_text_is_spelled_out_in_its_preview(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    path = data_dir / "nul.jsonl"
    path.write_text(json.dumps({"id": "n", "text": "before\x00after"}) + "\n", encoding="utf-8")
    job = make_job("jsonl:nul.jsonl", total=None, store="flaky(sqlite-vec,poison=n)")
    run_burst_worker()
    failure = BatchFailure.objects.get(job=job)
    assert failure.preview == "before\\x00after"


def test_directory__a_poisoned_file_records_its_relative_path_and_its_start(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    folder = data_dir / "notes"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha text", encoding="utf-8")
    (folder / "deep" / "b.md").write_text("beta " * 200, encoding="utf-8")
    (folder / "deep" / "c.txt").write_bytes(b"bad \xff byte")
    job = make_job(
        "directory:notes",
        total=None,
        max_failed_ratio=1.0,
        store="flaky(sqlite-vec,poison=deep/b.md)",
    )
    run_burst_worker()
    failures = failures_by_first_id(job)
    assert set(failures) == {"deep/b.md", "deep/c.txt"}
    poisoned, malformed = failures["deep/b.md"], failures["deep/c.txt"]
    assert poisoned.locator == "deep/b.md"
    assert poisoned.preview == ("beta " * 200)[:PREVIEW_CHARS]
    assert malformed.error_type == MALFORMED_ERROR
    assert malformed.locator == "deep/c.txt"
    assert malformed.preview == "bad \ufffd byte"
