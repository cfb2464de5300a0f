"""The presenter: every surface's figures for a job, computed at one moment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from reindexer.documents import MALFORMED_ERROR
from reindexer.models import BatchFailure, JobStatus, ReindexJob
from reindexer.presenter import JobView, present, status_label
from tests.contracts import STATUS_FIELDS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0


def job(**fields: object) -> ReindexJob:
    values: dict[str, object] = {
        "pk": 7,
        "name": "docs",
        "status": JobStatus.RUNNING,
        "source": "jsonl:docs.jsonl",
        "total_docs": 1000,
        "processed_docs": 250,
        "started_at": NOW - timedelta(seconds=10),
        "heartbeat_at": NOW - timedelta(seconds=2),
        "created_at": NOW - timedelta(seconds=20),
    }
    values.update(fields)
    return ReindexJob(**values)


def view(**fields: object) -> JobView:
    return JobView(job(**fields), NOW, LEASE)


def test_view__running_job_has_rate_eta_and_percent() -> None:
    v = view()
    assert (v.percent, v.progress) == (25, 0.25)
    assert v.rate == pytest.approx(25.0)
    assert v.eta == pytest.approx(30.0)
    assert v.elapsed == pytest.approx(10.0)
    assert v.heartbeat_age == pytest.approx(2.0)
    assert not v.stalled
    assert (v.can_cancel, v.can_retry) == (True, False)


def test_view__heartbeat_older_than_the_lease_is_stalled() -> None:
    v = view(heartbeat_at=NOW - timedelta(seconds=LEASE + 1))
    assert v.stalled
    assert v.as_status()["stalled"] is True


def test_view__finished_job_has_no_eta_and_no_heartbeat_age() -> None:
    v = view(
        status=JobStatus.COMPLETED, finished_at=NOW - timedelta(seconds=5), processed_docs=1000
    )
    assert (v.eta, v.heartbeat_age, v.percent) == (None, None, 100)
    assert v.rate == pytest.approx(200.0)  # 1000 documents over the 5 s it ran


def test_view__unknown_total_gives_no_progress_and_no_eta() -> None:
    v = view(total_docs=None)
    assert (v.percent, v.eta) == (0, None)


@pytest.mark.parametrize(
    ("fields", "label", "badge"),
    [
        ({}, "running", "running"),
        ({"cancel_requested_at": NOW}, "cancelling", "cancelling"),
        (
            {"status": JobStatus.COMPLETED, "failed_docs": 3},
            "completed with errors",
            "completed-with-errors",
        ),
        ({"status": JobStatus.COMPLETED}, "completed", "completed"),
        ({"status": JobStatus.FAILED}, "failed", "failed"),
    ],
)
def test_view__label_names_cancelling_and_completed_with_errors(
    fields: dict[str, object], label: str, badge: str
) -> None:
    v = view(**fields)
    assert (v.label, v.badge, status_label(v.job)) == (label, badge, label)


def test_view__cancelling_job_offers_no_second_cancel() -> None:
    assert not view(cancel_requested_at=NOW).can_cancel


def add_failure(job: ReindexJob, error_type: str) -> BatchFailure:
    return BatchFailure.objects.create(
        job=job, batch_number=1, doc_ids=["doc-1"], error_type=error_type, message="bad"
    )


@pytest.mark.django_db
def test_view__finished_job_with_a_retryable_failure_offers_retry(
    make_job: Callable[..., ReindexJob],
) -> None:
    done = make_job(status=JobStatus.FAILED, processed=5, failed=2)
    add_failure(done, "PermanentError")
    assert present(done).can_retry


@pytest.mark.django_db
def test_view__finished_job_whose_failures_are_all_malformed_offers_no_retry(
    make_job: Callable[..., ReindexJob],
) -> None:
    done = make_job(status=JobStatus.COMPLETED, processed=5, failed=2)
    add_failure(done, MALFORMED_ERROR)
    assert not present(done).can_retry


def test_view__can_retry_is_decided_from_the_counters_without_a_query_when_nothing_failed() -> None:
    # No database here: a query would raise.
    assert not view(status=JobStatus.COMPLETED, failed_docs=0).can_retry
    assert not view(failed_docs=3).can_retry  # running: nothing to retry yet


def test_status__carries_the_design_fields_with_rounded_figures() -> None:
    status = view(processed_docs=333).as_status()
    assert set(STATUS_FIELDS) <= set(status)
    assert status["progress"] == 0.333
    assert status["docs_per_second"] == 33.3
    assert status["eta_seconds"] == 20.0  # 667 left at 33.3 a second
    assert status["heartbeat_at"] == (NOW - timedelta(seconds=2)).isoformat()
    assert status["finished_at"] is None


def test_view__stalled_job_has_no_eta_in_any_surface() -> None:
    v = view(heartbeat_at=NOW - timedelta(seconds=LEASE + 1))
    assert v.job.eta_seconds(NOW) is not None  # the raw rate would still count down
    assert (v.stalled, v.eta, v.as_status()["eta_seconds"]) == (True, None, None)


def test_view__force_cancel_is_offered_only_once_the_lease_expired() -> None:
    assert not view().can_force_cancel
    assert view(heartbeat_at=NOW - timedelta(seconds=LEASE + 1)).can_force_cancel
    stalled_cancelling = view(
        heartbeat_at=NOW - timedelta(seconds=LEASE + 1), cancel_requested_at=NOW
    )
    assert stalled_cancelling.can_force_cancel and not stalled_cancelling.can_cancel


def test_status__carries_the_dashboards_label() -> None:
    status = view(status=JobStatus.COMPLETED, failed_docs=3).as_status()
    assert (status["status"], status["label"]) == (JobStatus.COMPLETED, "completed with errors")
    assert view(cancel_requested_at=NOW).as_status()["label"] == "cancelling"


# -- sliced jobs -----------------------------------------------------------------------------


def sliced(*slice_fields: Mapping[str, object], **fields: object) -> JobView:
    """A sliced job's view whose slices are in its prefetch cache, as the lists read them (no
    query: these rows are not saved)."""
    parent = job(slices=len(slice_fields) or 4, worker="", **fields)
    parts = [
        job(pk=100 + n, parent_id=parent.pk, slice_number=n, total_docs=250, **values)
        for n, values in enumerate(slice_fields, start=1)
    ]
    parent._prefetched_objects_cache = {"slice_jobs": parts}  # type: ignore[attr-defined]
    return JobView(parent, NOW, LEASE)


def test_sliced__status_lists_each_slice_with_its_worker_and_counters() -> None:
    v = sliced(
        {"worker": "w1", "processed_docs": 250, "status": JobStatus.COMPLETED},
        {"worker": "w2", "processed_docs": 100},
        {"status": JobStatus.PENDING, "processed_docs": 0, "heartbeat_at": None},
    )
    status = v.as_status()
    assert status["slice_count"] == 3 and status["slice_of"] is None
    assert [(s["slice_number"], s["worker"], s["processed_docs"]) for s in status["slices"]] == [
        (1, "w1", 250),
        (2, "w2", 100),
        (3, "", 0),
    ]
    assert status["slices"][1]["progress"] == 0.4
    assert v.slice_workers == ["w2"]  # the running slices' workers only


def test_sliced__stalled_only_when_every_active_slice_is_running_stale() -> None:
    stale = {"worker": "w1", "heartbeat_at": NOW - timedelta(seconds=LEASE + 5)}
    fresh = {"worker": "w2", "heartbeat_at": NOW - timedelta(seconds=1)}
    waiting = {"status": JobStatus.PENDING, "heartbeat_at": None}
    # The sliced job's own beat is as old as its last slice commit: it does not decide.
    old_beat = {"heartbeat_at": NOW - timedelta(minutes=5)}
    assert not sliced(stale, fresh, **old_beat).stalled
    assert not sliced(stale, waiting, **old_beat).stalled
    assert sliced(stale, stale, **old_beat).stalled
    assert sliced(stale, stale, **old_beat).can_force_cancel
    assert sliced(stale, fresh, **old_beat).heartbeat_age == 1.0


def test_sliced__before_the_split_awaits_it() -> None:
    v = sliced()
    assert v.awaiting_split and v.as_status()["slices"] == []
    assert not view().awaiting_split  # a job that is not sliced


def test_slice__names_its_sliced_job() -> None:
    status = view(parent_id=3, slice_number=2).as_status()
    assert (status["slice_of"], status["slice_number"], status["slices"]) == (3, 2, [])
