"""The presenter: every surface's figures for a job, computed at one moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reindexer.models import JobStatus, ReindexJob
from reindexer.presenter import JobView, status_label
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


def test_view__finished_job_with_failures_offers_retry() -> None:
    assert view(status=JobStatus.FAILED, failed_docs=2).can_retry


def test_status__carries_the_design_fields_with_rounded_figures() -> None:
    status = view(processed_docs=333).as_status()
    assert set(STATUS_FIELDS) <= set(status)
    assert status["progress"] == 0.333
    assert status["docs_per_second"] == 33.3
    assert status["eta_seconds"] == 20.0  # 667 left at 33.3 a second
    assert status["heartbeat_at"] == (NOW - timedelta(seconds=2)).isoformat()
    assert status["finished_at"] is None
