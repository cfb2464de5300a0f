"""Sliced jobs run by real worker subprocesses: a worker killed mid-slice, cancel, the whole
job's error budget, a slice failing last, verify and resume; each on the suite's database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.jobs import cancel_job
from reindexer.models import EventKind, JobStatus, ReindexJob
from tests.integration.conftest import Processes, finish, wait_until
from tests.integration.fleet import Fleet, cli_verify, events, kinds, row, slices_of, timeline

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]

# A short lease, so that a dead worker's slice is reclaimed within seconds.
SHORT_LEASE = {"REINDEXER_LEASE_SECONDS": "3", "REINDEXER_HEARTBEAT_SECONDS": "1"}
DOCS, SLICES, BATCH = 400, 4, 10


def slow_store(latency_ms: int, *poison: str) -> str:
    options = [f"latency={latency_ms}", *(f"poison={doc_id}" for doc_id in poison)]
    return f"flaky(sqlite-vec,{','.join(options)})"


def running_slices(parent: ReindexJob, at_least: int) -> list[ReindexJob]:
    """The slices of `parent` running with `at_least` documents processed."""
    return [
        s
        for s in slices_of(parent)
        if s.status == JobStatus.RUNNING and s.processed_docs >= at_least
    ]


def assert_clean(report: dict[str, object], in_store: int, failed: int = 0) -> None:
    figures = (report["in_store"], report["failed_recorded"], report["missing"])
    assert figures == (in_store, failed, 0), report
    assert report["duplicates"] == 0, report


def test_sigkill_mid_slice__only_that_slice_is_reclaimed_and_resumes_from_its_checkpoint(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # About 4 s of writing per slice (10 batches of 400 ms): time to kill one worker in its slice.
    job = make_job(
        make_corpus(DOCS), batch_size=BATCH, slices=SLICES, store=slow_store(400), collection="s"
    )
    fleet = Fleet(processes, SHORT_LEASE)
    for n in range(SLICES):
        fleet.start(f"w{n}")
    wait_until(lambda: bool(running_slices(job, 2 * BATCH)), what="a slice two batches in")
    victim = running_slices(job, 2 * BATCH)[0]
    fleet.kill(victim.worker)
    killed = row(victim)  # what the dead worker committed: its checkpoint and counters
    assert killed.status == JobStatus.RUNNING and 0 < killed.processed_docs < (
        killed.total_docs or 0
    )

    wait_until(lambda: row(job).is_finished, timeout=60, what="the sliced job to end")
    logs = fleet.stop()
    job = row(job)
    assert job.status == JobStatus.COMPLETED, (job.error, fleet.tail())

    parts = slices_of(job)
    assert len(parts) == SLICES
    assert [s.status for s in parts] == [JobStatus.COMPLETED] * SLICES
    assert sum(s.total_docs or 0 for s in parts) == job.total_docs == DOCS
    assert sum(s.processed_docs for s in parts) == job.processed_docs == DOCS
    assert (job.failed_docs, sum(s.failed_docs for s in parts)) == (0, 0)

    for part in parts:
        reclaimed = events(part, EventKind.RECLAIMED)
        assert len(events(part, EventKind.CLAIMED)) == 1, kinds(part)
        if part.pk != victim.pk:
            assert reclaimed == [], f"slice {part.slice_number} was reclaimed: {kinds(part)}"
            continue
        assert len(reclaimed) == 1, kinds(part)
        assert reclaimed[0].actor != victim.worker
        assert f"resuming from {killed.processed_docs} processed" in reclaimed[0].detail
        resumed = events(part, EventKind.CHECKPOINT_RESUMED)
        assert len(resumed) == 1 and f"after {killed.processed_docs} documents" in resumed[0].detail
    assert events(job, EventKind.RECLAIMED) == []
    # The slices ran on several workers (the victim's slice on two).
    ran_on = {e.actor for part in parts for e in events(part) if e.kind in ("claimed", "reclaimed")}
    assert len(ran_on) >= 2, ran_on
    assert victim.worker in ran_on
    assert "Traceback" not in "".join(logs.values()), fleet.tail()

    assert_clean(cli_verify(processes, job), in_store=DOCS)


def test_cancel__every_slice_stops_within_a_batch_and_the_job_ends_cancelled(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(
        make_corpus(DOCS), batch_size=BATCH, slices=SLICES, store=slow_store(300), collection="c"
    )
    fleet = Fleet(processes)
    for n in range(SLICES):
        fleet.start(f"w{n}")
    wait_until(
        lambda: len(running_slices(job, BATCH)) == SLICES, what="every slice a batch or more in"
    )
    cancel_job(row(job))
    # At most the batch each slice had in flight commits after the request.
    at_request = {s.pk: s.processed_docs for s in slices_of(job)}

    wait_until(lambda: row(job).is_finished, timeout=20, what="the sliced job to end")
    fleet.stop()
    job = row(job)
    assert job.status == JobStatus.CANCELLED, (job.error, fleet.tail())
    parts = slices_of(job)
    assert [s.status for s in parts] == [JobStatus.CANCELLED] * SLICES
    for part in parts:
        assert at_request[part.pk] <= part.processed_docs <= at_request[part.pk] + BATCH
        assert part.processed_docs < (part.total_docs or 0)
        assert kinds(part)[-2:] == ["cancel_requested", "cancelled"], kinds(part)
    assert job.processed_docs == sum(s.processed_docs for s in parts) < DOCS
    assert kinds(job).count("cancel_requested") == 1
    assert kinds(job)[-1] == "cancelled"
    assert job.lease_token is None and job.finished_at is not None


def test_error_budget__a_poison_heavy_slice_fails_the_whole_job_and_stops_the_others(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # The first batch of slice 3: 7 poisoned documents, more than 0.3% of the job's 2000. Its
    # halving takes about 20 store calls (2 s at 100 ms each), while each of the other slices
    # has 50 batches (5 s) to write: they are well under way when the budget breaks.
    poison = [f"doc-{i}" for i in range(1000, 1007)]
    job = make_job(
        make_corpus(2000),
        batch_size=BATCH,
        slices=SLICES,
        max_failed_ratio=0.003,
        store=slow_store(100, *poison),
        collection="budget",
    )
    fleet = Fleet(processes)
    for n in range(SLICES):
        fleet.start(f"w{n}")
    wait_until(lambda: row(job).is_finished, timeout=40, what="the sliced job to end")
    fleet.stop()

    job = row(job)
    assert job.status == JobStatus.FAILED, (job.status, timeline(job))
    assert job.error.startswith("slice 3: error budget exceeded: 7 of 2000 documents failed")
    parts = slices_of(job)
    assert parts[2].status == JobStatus.FAILED and parts[2].failed_docs == 7
    for part in parts[:2] + parts[3:]:
        # Stopped at a batch boundary, long before their 500 documents.
        assert part.status == JobStatus.CANCELLED, (part.slice_number, timeline(job))
        assert part.processed_docs < (part.total_docs or 0)
        assert "cancel_requested" in kinds(part)
    assert job.failed_docs == 7
    assert job.processed_docs == sum(s.processed_docs for s in parts)
    assert kinds(job)[-1] == "failed"


def test_error_budget__a_failure_in_the_last_slice_to_run_fails_the_job_not_cancels_it(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # One worker runs slice 1 to the end, then slice 2, whose first batch breaks the budget: the
    # failing slice is the last active one, and the job must fail as when others still ran.
    poison = [f"doc-{i}" for i in range(20, 25)]
    job = make_job(
        make_corpus(40),
        batch_size=BATCH,
        slices=2,
        store=slow_store(0, *poison),
        collection="last",
    )
    code, _, err = finish(processes.worker("w-alone"), timeout=60)
    assert code == 0, err
    job = row(job)
    parts = slices_of(job)
    assert [s.status for s in parts] == [JobStatus.COMPLETED, JobStatus.FAILED], kinds(job)
    assert job.status == JobStatus.FAILED, (job.status, job.error, timeline(job))
    assert job.error.startswith("slice 2: error budget exceeded: 5 of 40 documents failed")


def test_verify__a_sliced_job_completed_with_errors_counts_its_slices_failures_as_recorded(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # One poisoned document in each slice: 2 of 40, within the 10% budget.
    job = make_job(
        make_corpus(40),
        batch_size=BATCH,
        slices=2,
        store=slow_store(0, "doc-5", "doc-25"),
        collection="errors",
    )
    code, _, err = finish(processes.worker("w-alone"), timeout=60)
    assert code == 0, err
    job = row(job)
    assert job.status == JobStatus.COMPLETED, (job.error, kinds(job))
    assert (job.processed_docs, job.failed_docs) == (40, 2)
    report = cli_verify(processes, job)
    assert_clean(report, in_store=38, failed=2)


def test_resume__a_sliced_job_failed_by_one_slice_resumes_every_unfinished_slice_to_the_end(
    data_dir: Path, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    corpus = make_corpus(600)
    # About 6 s of writing per slice: time for a third worker to start while two write.
    job = make_job(corpus, batch_size=BATCH, slices=3, store=slow_store(300), collection="resume")
    fleet = Fleet(processes)
    fleet.start("w1")
    fleet.start("w2")
    wait_until(lambda: len(running_slices(job, BATCH)) == 2, what="two slices under way")
    # Slice 3 waits for a worker; the source goes away before one claims it (the two running
    # slices have the file open already), so slice 3 fails, and the whole job with it.
    away = data_dir / "away.jsonl"
    corpus.rename(away)
    fleet.start("w3")
    wait_until(lambda: row(job).is_finished, timeout=40, what="the sliced job to fail")
    job = row(job)
    assert job.status == JobStatus.FAILED, (job.status, kinds(job))
    assert job.error.startswith("slice 3: "), job.error
    stopped = {s.slice_number: s.processed_docs for s in slices_of(job)}
    assert stopped[3] == 0 and 0 < stopped[1] < 200 and 0 < stopped[2] < 200, stopped

    away.rename(corpus)
    resumed = processes.run("reindex", "resume", str(job.pk))
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: row(job).is_finished, timeout=60, what="the resumed job to end")
    fleet.stop()
    job = row(job)
    assert job.status == JobStatus.COMPLETED, (job.error, fleet.tail())
    parts = slices_of(job)
    assert [s.status for s in parts] == [JobStatus.COMPLETED] * 3
    assert sum(s.processed_docs for s in parts) == job.processed_docs == 600
    for part in parts:
        # Each resumed from its own checkpoint: the documents before it were not read again.
        assert "resumed" in kinds(part), kinds(part)
        assert part.processed_docs == part.total_docs
    assert_clean(cli_verify(processes, job), in_store=600)


def test_resume__a_sliced_job_failed_on_its_budget_still_writes_its_remaining_documents(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # Slice 1's first batch breaks the budget (5 of 400 > 1%) while slice 2 writes; resumed,
    # the budget is still exceeded (failures stay counted), but every other document must still
    # be written: a resume that stops again at its first batch can never finish the job.
    poison = [f"doc-{i}" for i in range(5)]
    job = make_job(
        make_corpus(400),
        batch_size=BATCH,
        slices=2,
        max_failed_ratio=0.01,
        store=slow_store(100, *poison),
        collection="budget-resume",
    )
    fleet = Fleet(processes)
    fleet.start("w1")
    fleet.start("w2")
    wait_until(lambda: row(job).is_finished, timeout=40, what="the sliced job to fail")
    assert row(job).status == JobStatus.FAILED, timeline(row(job))
    assert row(job).processed_docs < 400

    resumed = processes.run("reindex", "resume", str(job.pk))
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: row(job).is_finished, timeout=60, what="the resumed job to end")
    fleet.stop()
    job = row(job)
    assert "error budget exceeded" in job.error, job.error
    assert (job.processed_docs, job.failed_docs) == (400, 5), timeline(job)
    assert_clean(cli_verify(processes, job), in_store=395, failed=5)
