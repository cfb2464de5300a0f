"""`reindex verify` finding real gaps: ids deleted from the store, ids added to the source.

Each test runs a job to completion with the in-process burst worker on a real sqlite-vec store,
then opens a gap and checks what `verify` reports, through `verify_job` and the command line.

Duplicates are not covered here: the vec0 table's `id` is a primary key, and sqlite-vec refuses a
second row with the same id ("UNIQUE constraint failed on docs primary key"), so a real store
cannot be made to hold one; `duplicates` is checked to stay 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from reindexer.models import JobStatus, ReindexJob
from reindexer.stores import open_store
from reindexer.verify import SAMPLE_SIZE, verify_job

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
Run = Callable[..., None]

DIMENSIONS = 384  # the `hashing` embedder's


def completed_job(make_job: MakeJob, run_burst_worker: Run, corpus: Path) -> ReindexJob:
    job = make_job(corpus, batch_size=10)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def delete_from_store(job: ReindexJob, ids: list[str]) -> None:
    store = open_store(job.store, job.collection, DIMENSIONS)
    try:
        assert store.delete(ids) == len(ids)
    finally:
        store.close()


def cli_verify(job: ReindexJob) -> dict[str, Any]:
    """The command's report; it fails (exit 1) exactly when something is missing or duplicated."""
    out = StringIO()
    try:
        call_command("reindex", "verify", str(job.pk), "--json", stdout=out)
    except CommandError:
        failed = True
    else:
        failed = False
    report: dict[str, Any] = json.loads(out.getvalue())
    assert failed == bool(report["missing"] or report["duplicates"])
    return report


def append_lines(corpus: Path, lines: list[str]) -> None:
    with corpus.open("a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def new_doc(doc_id: str) -> str:
    return json.dumps({"id": doc_id, "text": f"added after the run: {doc_id}"})


def test_verify__ids_deleted_from_the_store_are_missing_and_sampled_in_order(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = completed_job(make_job, run_burst_worker, make_corpus(30))
    assert verify_job(job)["missing"] == 0
    deleted = ["doc-3", "doc-25", "doc-17"]
    delete_from_store(job, deleted)

    report = verify_job(job)
    assert report == {
        "job": job.pk,
        "source_docs": 30,
        "in_store": 27,
        "failed_recorded": 0,
        "missing": 3,
        "duplicates": 0,
        "missing_sample": ["doc-17", "doc-25", "doc-3"],
    }
    assert cli_verify(job) == report


def test_verify__the_sample_is_the_first_ids_in_order_when_more_are_missing(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = completed_job(make_job, run_burst_worker, make_corpus(40))
    deleted = [f"doc-{i}" for i in range(5, 30)]
    assert len(deleted) > SAMPLE_SIZE
    delete_from_store(job, deleted)

    report = verify_job(job)
    assert (report["source_docs"], report["in_store"]) == (40, 40 - len(deleted))
    assert (report["missing"], report["duplicates"]) == (len(deleted), 0)
    assert report["missing_sample"] == sorted(deleted)[:SAMPLE_SIZE]
    assert cli_verify(job) == report


def test_verify__records_appended_to_the_source_after_the_run_are_missing(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    corpus = make_corpus(12)
    job = completed_job(make_job, run_burst_worker, corpus)
    added = ["new-b", "new-a", "new-c"]
    append_lines(corpus, [new_doc(doc_id) for doc_id in added])

    report = verify_job(job)
    assert (report["source_docs"], report["in_store"]) == (15, 12)
    assert (report["missing"], report["duplicates"]) == (3, 0)
    assert report["missing_sample"] == ["new-a", "new-b", "new-c"]
    assert cli_verify(job) == report


def test_verify__malformed_records_are_not_counted_as_missing(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    corpus = make_corpus(20, extra_lines=["not json", json.dumps({"id": "no-text"})])
    job = completed_job(make_job, run_burst_worker, corpus)
    assert job.failed_docs == 2
    # One more malformed record, and one good one, after the run: only the good one is missing.
    append_lines(corpus, ['{"id": "broken", "text": ', new_doc("late")])

    report = verify_job(job)
    assert (report["source_docs"], report["in_store"]) == (21, 20)
    assert (report["missing"], report["duplicates"]) == (1, 0)
    assert report["missing_sample"] == ["late"]
    assert cli_verify(job) == report


def test_verify__a_gap_from_both_sides_at_once_is_counted_once_per_id(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    corpus = make_corpus(10)
    job = completed_job(make_job, run_burst_worker, corpus)
    delete_from_store(job, ["doc-4"])
    append_lines(corpus, [new_doc("doc-10")])

    report = verify_job(job)
    assert (report["source_docs"], report["in_store"], report["missing"]) == (11, 9, 2)
    assert report["missing_sample"] == ["doc-10", "doc-4"]
    assert report["duplicates"] == 0
    assert cli_verify(job) == report
