"""The engine, run in-process by `reindex_worker --burst`, on real stores with injected faults."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.engine import EngineOptions, JobRunner, Outcome
from reindexer.jobs import failed_doc_ids, retry_failed
from reindexer.models import BatchFailure, InvalidTransition, JobStatus, ReindexJob
from reindexer.stores import open_store
from reindexer.verify import verify_job
from tests.integration.conftest import event_kinds

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
Run = Callable[..., None]


def stored_ids(job: ReindexJob) -> set[str]:
    store = open_store("sqlite-vec", job.collection, 384)
    try:
        return set(store.ids())
    finally:
        store.close()


def assert_counters_consistent(job: ReindexJob) -> None:
    assert job.processed_docs == job.total_docs
    assert job.progress == 1.0
    assert job.written_docs == job.processed_docs - job.failed_docs - job.skipped_docs
    assert job.failed_docs == sum(len(f.doc_ids) for f in job.failures.all())


def test_engine__clean_job_writes_every_document_and_completes(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(make_corpus(250), batch_size=100)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.total_docs, job.processed_docs, job.failed_docs, job.batches_done) == (
        250,
        250,
        0,
        3,
    )
    assert job.finished_at is not None and job.lease_token is None
    assert_counters_consistent(job)
    assert stored_ids(job) == {f"doc-{i}" for i in range(250)}
    assert event_kinds(job) == ["created", "claimed", "completed"]
    report = verify_job(job)
    assert (report["source_docs"], report["in_store"], report["missing"], report["duplicates"]) == (
        250,
        250,
        0,
        0,
    )


def test_engine__transient_errors_are_retried_and_nothing_is_lost(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(400),
        batch_size=20,
        max_retries=8,
        store="flaky(sqlite-vec,transient=0.3,seed=11)",
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.retries > 0
    assert job.failed_docs == 0
    assert_counters_consistent(job)
    report = verify_job(job)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, 400)


def test_engine__one_poison_document_in_a_batch_of_100_fails_alone(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(make_corpus(100), batch_size=100, store="flaky(sqlite-vec,poison=doc-37)")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.processed_docs, job.failed_docs, job.written_docs) == (100, 1, 99)
    assert (job.batches_done, job.batches_failed) == (1, 1)
    failure = BatchFailure.objects.get(job=job)
    assert failure.doc_ids == ["doc-37"]
    assert failure.batch_number == 1
    assert failure.error_type == "PermanentError"
    assert "doc-37" in failure.message
    assert "PermanentError" in failure.traceback and "Traceback" in failure.traceback
    assert failure.attempts == 1
    assert failure.transient is False
    assert failure.resolved_at is None
    assert stored_ids(job) == {f"doc-{i}" for i in range(100)} - {"doc-37"}
    assert_counters_consistent(job)
    report = verify_job(job)
    assert (report["missing"], report["failed_recorded"], report["in_store"]) == (0, 1, 99)


def test_engine__malformed_records_are_recorded_never_written(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    path = make_corpus(
        20, extra_lines=["not json", '{"id": "doc-3", "text": "a duplicate"}', '{"id": "x"}']
    )
    job = make_job(path, batch_size=7, max_failed_ratio=0.5)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.total_docs, job.processed_docs, job.failed_docs, job.written_docs) == (
        23,
        23,
        3,
        20,
    )
    failures = {tuple(f.doc_ids): f for f in BatchFailure.objects.filter(job=job)}
    assert set(failures) == {("line 21",), ("doc-3 (line 22)",), ("x (line 23)",)}
    assert all(f.error_type == "MalformedRecord" for f in failures.values())
    assert "line 22: duplicate id 'doc-3'" in failures[("doc-3 (line 22)",)].message
    assert stored_ids(job) == {f"doc-{i}" for i in range(20)}
    assert_counters_consistent(job)


def test_engine__failures_beyond_the_error_budget_fail_the_job(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    poison = ",".join(f"poison=doc-{i}" for i in range(0, 100, 5))
    job = make_job(
        make_corpus(100), batch_size=10, max_failed_ratio=0.1, store=f"flaky(sqlite-vec,{poison})"
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("error budget exceeded:")
    assert "max_failed_ratio=0.1" in job.error
    assert job.failed_docs > 10
    assert job.finished_at is not None
    assert event_kinds(job)[-1] == "failed"


def test_engine__failures_within_the_error_budget_complete_with_errors(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(100),
        batch_size=10,
        max_failed_ratio=0.05,
        store="flaky(sqlite-vec,poison=doc-1,poison=doc-50)",
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.failed_docs == 2
    assert job.batches_failed == 2


def test_engine__store_that_is_always_down_fails_the_job_as_unreachable(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(make_corpus(50), batch_size=50, store="flaky(sqlite-vec,transient=1.0)")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("store unreachable:")
    assert "TransientError" in job.error and "simulated store timeout" in job.error
    assert job.processed_docs == 0
    assert stored_ids(job) == set()


def test_engine__source_file_missing_at_run_time_fails_the_job(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    path = make_corpus(10)
    job = make_job(path)
    path.unlink()
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "not found" in job.error and "docs.jsonl" in job.error
    assert event_kinds(job) == ["created", "claimed", "failed"]


def test_engine__cancel_requested_before_the_worker_starts_is_confirmed_without_writing(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(make_corpus(30), batch_size=10)
    job.request_cancel("alice")
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.processed_docs == 0
    assert event_kinds(job) == ["created", "cancel_requested", "cancelled"]


def test_retry_failed__queues_only_the_failed_ids_and_resolves_them_on_completion(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    path = make_corpus(60)
    job = make_job(
        path,
        batch_size=25,
        max_failed_ratio=0.5,
        collection="retry",
        store="flaky(sqlite-vec,poison=doc-4,poison=doc-40,poison=doc-41)",
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.failed_docs == 3
    assert sorted(failed_doc_ids(job)) == ["doc-4", "doc-40", "doc-41"]

    retry = retry_failed(job)
    # The store recovered: the retry writes to the same collection without faults.
    ReindexJob.objects.filter(pk=retry.pk).update(store="sqlite-vec")
    assert retry.retry_of_id == job.pk
    assert "retry_failed_queued" in event_kinds(job)
    run_burst_worker()
    retry.refresh_from_db()
    assert retry.status == JobStatus.COMPLETED
    assert (retry.total_docs, retry.processed_docs, retry.failed_docs) == (3, 3, 0)
    assert job.failures.unresolved().count() == 0
    assert stored_ids(job) == {f"doc-{i}" for i in range(60)}
    report = verify_job(job)
    assert (report["missing"], report["failed_recorded"], report["in_store"]) == (0, 0, 60)


def test_retry_failed__documents_that_fail_again_stay_recorded(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(30), batch_size=10, max_failed_ratio=0.5, store="flaky(sqlite-vec,poison=doc-7)"
    )
    run_burst_worker()
    job.refresh_from_db()
    retry = retry_failed(job)
    run_burst_worker()
    retry.refresh_from_db()
    assert retry.status == JobStatus.COMPLETED
    assert failed_doc_ids(retry) == ["doc-7"]
    report = verify_job(job)
    assert (report["missing"], report["failed_recorded"]) == (0, 1)
    # The original still holds it, so the operator can retry again once the store is fixed.
    assert failed_doc_ids(job) == ["doc-7"]
    second = retry_failed(job)
    ReindexJob.objects.filter(pk=second.pk).update(store="sqlite-vec")
    run_burst_worker()
    assert failed_doc_ids(job) == []
    assert "doc-7" in stored_ids(job)


def test_retry_failed__leaves_malformed_records_alone_and_says_why(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(10, extra_lines=['{"id": "doc-x", "text": ""}', "not json"]),
        max_failed_ratio=0.5,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.failed_docs == 2
    assert failed_doc_ids(job) == []
    with pytest.raises(InvalidTransition, match="malformed records cannot be retried"):
        retry_failed(job)
    assert not ReindexJob.objects.filter(retry_of=job).exists()


def test_malformed_record_with_an_id__failure_names_its_line_and_a_later_good_copy_is_written(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(3, extra_lines=['{"id": "late", "text": ""}', '{"id": "late", "text": "ok"}']),
        max_failed_ratio=0.5,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert [f.doc_ids for f in job.failures.all()] == [["late (line 4)"]]
    assert "late" in stored_ids(job)
    report = verify_job(job)
    assert (report["source_docs"], report["failed_recorded"], report["missing"]) == (4, 0, 0)
    assert_counters_consistent(job)


def test_id_with_a_nul_character__is_a_malformed_record_on_every_database(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    job = make_job(
        make_corpus(5, extra_lines=['{"id": "a\\u0000b", "text": "nul inside"}']),
        max_failed_ratio=0.5,
    )
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    (failure,) = job.failures.all()
    assert failure.doc_ids == ["line 6"]
    assert "NUL" in failure.message


def test_directory_source__job_indexes_every_file(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Run
) -> None:
    root = data_dir / "notes"
    root.mkdir()
    for i in range(12):
        (root / f"n{i:02}.md").write_text(f"note number {i}")
    (root / "empty.txt").write_text("")
    job = make_job("directory:notes", batch_size=5)
    run_burst_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.total_docs, job.processed_docs, job.failed_docs) == (13, 13, 1)
    assert len(stored_ids(job)) == 12
    assert verify_job(job)["missing"] == 0


def test_worker__run_in_process_puts_the_signal_handlers_back(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    make_job(make_corpus(3))
    run_burst_worker()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_hand_back__cancel_requested_after_the_last_commit_is_confirmed_instead(
    make_corpus: Corpus, make_job: MakeJob
) -> None:
    job = make_job(make_corpus(3))
    token = job.claim("w1", lease_seconds=30)
    stop = threading.Event()
    stop.set()
    runner = JobRunner(job, token, "w1", stop=stop, options=EngineOptions())
    ReindexJob.objects.get(pk=job.pk).request_cancel("alice")  # lands after the batch commit
    assert runner._hand_back() == Outcome.CANCELLED
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.lease_token is None
    assert event_kinds(job)[-2:] == ["cancel_requested", "cancelled"]
