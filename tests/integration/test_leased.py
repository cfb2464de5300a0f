"""The one lease fence: `leased()`, the heartbeat and the engine's raw batch commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from reindexer.batching import BatchOutcome, FailureRecord
from reindexer.engine import BatchCommitter
from reindexer.models import BATCH_COUNTERS, BatchFailure, JobStatus, LeaseLost, ReindexJob
from tests.integration.conftest import LEASE, claimed, snapshot

pytestmark = pytest.mark.django_db

CHECKPOINT = {"line": 42}


def distinct_increments() -> dict[str, int]:
    """A different increment for every counter, so that a swapped parameter shows."""
    return {name: 10 * (i + 1) + i for i, name in enumerate(BATCH_COUNTERS)}


def test_leased__matches_the_running_job_under_its_token(pending: ReindexJob) -> None:
    token = claimed(pending)
    assert list(ReindexJob.objects.leased(pending.pk, token)) == [pending]


def test_leased__matches_nothing_under_another_token(pending: ReindexJob) -> None:
    claimed(pending)
    assert not ReindexJob.objects.leased(pending.pk, uuid.uuid4()).exists()


def test_leased__matches_nothing_for_another_job(
    pending: ReindexJob, make_corpus: Callable[..., Path], make_job: Callable[..., ReindexJob]
) -> None:
    token = claimed(pending)
    other = make_job(make_corpus(3, name="other.jsonl"), collection="other")
    claimed(other)
    assert not ReindexJob.objects.leased(other.pk, token).exists()


def test_leased__matches_nothing_once_the_job_left_running(pending: ReindexJob) -> None:
    token = claimed(pending)
    pending.complete(token, "w1")
    assert pending.status == JobStatus.COMPLETED
    assert not ReindexJob.objects.leased(pending.pk, token).exists()


def test_leased__matches_nothing_for_a_pending_job(pending: ReindexJob) -> None:
    token = claimed(pending)
    pending.hand_back(token, "w1")
    ReindexJob.objects.filter(pk=pending.pk).update(lease_token=token)  # a leftover token
    assert not ReindexJob.objects.leased(pending.pk, token).exists()


def test_heartbeat__renews_the_lease_of_its_token(pending: ReindexJob) -> None:
    token = claimed(pending)
    ReindexJob.objects.filter(pk=pending.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=60)
    )
    before = timezone.now()
    pending.heartbeat(token)
    beat = snapshot(pending)["heartbeat_at"]
    # The database's clock: this machine's, to the millisecond SQLite keeps.
    assert before - timedelta(seconds=1) <= beat <= timezone.now() + timedelta(seconds=1)


def test_heartbeat__stale_token_raises_lease_lost_and_changes_nothing(
    pending: ReindexJob,
) -> None:
    claimed(pending)
    before = snapshot(pending)
    stale = uuid.uuid4()
    with pytest.raises(LeaseLost, match=f"job {pending.pk}: lease {stale} is no longer held"):
        pending.heartbeat(stale)
    assert snapshot(pending) == before


def test_commit__stale_token_raises_lease_lost_and_changes_nothing(pending: ReindexJob) -> None:
    claimed(pending)
    before = snapshot(pending)
    stale = uuid.uuid4()
    committer = BatchCommitter(pending, stale)
    failure = FailureRecord(["d1"], "ValueError", "bad", "", 1, False)
    with pytest.raises(LeaseLost, match=f"job {pending.pk}: lease {stale} is no longer held"):
        committer.commit(1, 5, BatchOutcome(written=4, retries=2, failures=[failure]), CHECKPOINT)
    assert snapshot(pending) == before
    assert not BatchFailure.objects.filter(job=pending).exists()
    assert all(getattr(pending, name) == before[name] for name in BATCH_COUNTERS)


def test_commit__stale_token_after_a_reclaim_changes_no_counter(pending: ReindexJob) -> None:
    first = claimed(pending, "w1")
    ReindexJob.objects.filter(pk=pending.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=LEASE + 5)
    )
    pending.refresh_from_db()
    claimed(pending, "w2")
    before = snapshot(pending)
    with pytest.raises(LeaseLost):
        BatchCommitter(pending, first).commit_counts(1, distinct_increments(), [], CHECKPOINT)
    assert snapshot(pending) == before


def test_commit__increments_each_counter_by_name(pending: ReindexJob) -> None:
    token = claimed(pending)
    ReindexJob.objects.filter(pk=pending.pk).update(
        **{name: 1000 * (i + 1) for i, name in enumerate(BATCH_COUNTERS)}
    )
    pending.refresh_from_db()
    before = snapshot(pending)
    increments = distinct_increments()

    cancel_requested = BatchCommitter(pending, token).commit_counts(7, increments, [], CHECKPOINT)

    after = snapshot(pending)
    assert cancel_requested is False
    for name in BATCH_COUNTERS:
        assert after[name] == before[name] + increments[name], name
        assert getattr(pending, name) == after[name], f"{name} in memory"
    assert after["checkpoint"] == CHECKPOINT
    # The database's clock renews the lease; memory holds this host's reading of the same moment.
    assert abs(after["heartbeat_at"] - pending.heartbeat_at) < timedelta(seconds=1)
    assert abs(after["updated_at"] - pending.updated_at) < timedelta(seconds=1)


def test_commit__batch_outcome_counts_one_batch_with_its_failures(pending: ReindexJob) -> None:
    token = claimed(pending)
    failures = [
        FailureRecord(["d1", "d2"], "ValueError", "bad", "", 1, False),
        FailureRecord(["d3"], "TimeoutError", "slow", "", 4, True),
    ]
    BatchCommitter(pending, token).commit(
        3, 10, BatchOutcome(written=7, retries=3, failures=failures), CHECKPOINT
    )
    row = snapshot(pending)
    assert {name: row[name] for name in BATCH_COUNTERS} == {
        "processed_docs": 10,
        "failed_docs": 3,
        "skipped_docs": 0,
        "batches_done": 1,
        "batches_failed": 1,
        "retries": 3,
    }
    stored = BatchFailure.objects.filter(job=pending).order_by("id")
    assert [(f.batch_number, f.doc_ids) for f in stored] == [(3, ["d1", "d2"]), (3, ["d3"])]


def test_commit__reports_a_cancel_request(pending: ReindexJob) -> None:
    token = claimed(pending)
    pending.request_cancel("operator")
    assert BatchCommitter(pending, token).commit(1, 1, BatchOutcome(written=1), CHECKPOINT)


def test_commit__increments_must_name_every_counter(pending: ReindexJob) -> None:
    token = claimed(pending)
    before = snapshot(pending)
    increments = distinct_increments()
    del increments["retries"]
    with pytest.raises(ValueError, match="increments must name exactly"):
        BatchCommitter(pending, token).commit_counts(1, increments, [], CHECKPOINT)
    assert snapshot(pending) == before
