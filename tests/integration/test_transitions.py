"""Guarded state transitions of ReindexJob, and the database constraints that back them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from reindexer.models import InvalidTransition, JobStatus, LeaseLost, ReindexJob
from tests.integration.conftest import LEASE, claimed, event_kinds, snapshot

pytestmark = pytest.mark.django_db


def make_stale(job: ReindexJob) -> None:
    ReindexJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=LEASE + 5)
    )
    job.refresh_from_db()


def test_claim__pending_job_becomes_running_under_a_new_lease(pending: ReindexJob) -> None:
    token = claimed(pending, "w1")
    row = snapshot(pending)
    assert row["status"] == JobStatus.RUNNING
    assert row["lease_token"] == token
    assert row["worker"] == "w1"
    assert row["started_at"] is not None and row["heartbeat_at"] is not None
    assert event_kinds(pending) == ["created", "claimed"]


def test_claim__stale_running_job_is_reclaimed_by_another_worker(pending: ReindexJob) -> None:
    first = claimed(pending, "w1")
    started = pending.started_at
    make_stale(pending)
    second = pending.claim("w2", lease_seconds=LEASE)
    row = snapshot(pending)
    assert second != first
    assert row["status"] == JobStatus.RUNNING
    assert row["lease_token"] == second and row["worker"] == "w2"
    assert row["started_at"] == started
    assert event_kinds(pending) == ["created", "claimed", "reclaimed"]


def test_claim__running_job_with_a_fresh_lease_is_refused_and_unchanged(
    pending: ReindexJob,
) -> None:
    claimed(pending, "w1")
    before = snapshot(pending)
    with pytest.raises(InvalidTransition):
        pending.claim("w2", lease_seconds=LEASE)
    assert snapshot(pending) == before


def test_hand_back__running_job_returns_to_pending_with_its_checkpoint(pending: ReindexJob) -> None:
    token = claimed(pending)
    ReindexJob.objects.filter(pk=pending.pk).update(checkpoint={"offset": 42}, processed_docs=2)
    pending.hand_back(token, "w1")
    row = snapshot(pending)
    assert row["status"] == JobStatus.PENDING
    assert row["checkpoint"] == {"offset": 42} and row["processed_docs"] == 2
    assert row["lease_token"] is None and row["worker"] == "" and row["heartbeat_at"] is None
    assert event_kinds(pending)[-1] == "handed_back"


@pytest.mark.parametrize(
    ("finish", "status"),
    [
        (lambda job, token: job.complete(token, "w1"), JobStatus.COMPLETED),
        (lambda job, token: job.fail(token, "w1", "boom"), JobStatus.FAILED),
    ],
)
def test_finish__running_job_ends_completed_or_failed(
    pending: ReindexJob, finish: Callable[[ReindexJob, uuid.UUID], None], status: JobStatus
) -> None:
    token = claimed(pending)
    finish(pending, token)
    row = snapshot(pending)
    assert row["status"] == status
    assert row["finished_at"] is not None and row["lease_token"] is None
    assert event_kinds(pending)[-1] == status.value
    if status == JobStatus.FAILED:
        assert row["error"] == "boom"


def test_cancel__pending_job_is_cancelled_at_once(pending: ReindexJob) -> None:
    pending.request_cancel("alice")
    row = snapshot(pending)
    assert row["status"] == JobStatus.CANCELLED
    assert row["finished_at"] is not None
    assert event_kinds(pending)[-2:] == ["cancel_requested", "cancelled"]


def test_cancel__running_job_is_asked_to_stop_then_confirmed_by_its_worker(
    pending: ReindexJob,
) -> None:
    token = claimed(pending)
    pending.request_cancel("alice")
    row = snapshot(pending)
    assert row["status"] == JobStatus.RUNNING and row["cancel_requested_at"] is not None
    assert pending.is_cancelling
    pending.confirm_cancel(token, "w1")
    row = snapshot(pending)
    assert row["status"] == JobStatus.CANCELLED and row["lease_token"] is None
    assert event_kinds(pending)[-2:] == ["cancel_requested", "cancelled"]


def test_cancel__twice_on_a_running_job_says_it_is_already_cancelling(pending: ReindexJob) -> None:
    claimed(pending)
    pending.request_cancel("alice")
    before = snapshot(pending)
    with pytest.raises(InvalidTransition, match="already cancelling"):
        pending.request_cancel("bob")
    assert snapshot(pending) == before


def test_cancel__twice_on_a_pending_job_says_it_is_cancelled(pending: ReindexJob) -> None:
    pending.request_cancel("alice")
    before = snapshot(pending)
    with pytest.raises(InvalidTransition, match="cannot be cancelled: it is cancelled"):
        pending.request_cancel("bob")
    assert snapshot(pending) == before


def _completed(job: ReindexJob) -> uuid.UUID:
    token = claimed(job)
    job.complete(token, "w1")
    return token


def _running(job: ReindexJob) -> uuid.UUID:
    return claimed(job)


def _pending(job: ReindexJob) -> uuid.UUID:
    return uuid.uuid4()


FORBIDDEN: list[
    tuple[
        str,
        Callable[[ReindexJob], uuid.UUID],
        Callable[[ReindexJob, uuid.UUID], Any],
        type[Exception],
    ]
] = [
    ("complete a pending job", _pending, lambda j, t: j.complete(t, "w"), LeaseLost),
    ("fail a pending job", _pending, lambda j, t: j.fail(t, "w", "x"), LeaseLost),
    ("hand back a pending job", _pending, lambda j, t: j.hand_back(t, "w"), LeaseLost),
    (
        "confirm a cancel nobody asked for",
        _running,
        lambda j, t: j.confirm_cancel(t, "w"),
        LeaseLost,
    ),
    (
        "complete under another lease",
        _running,
        lambda j, t: j.complete(uuid.uuid4(), "w"),
        LeaseLost,
    ),
    (
        "hand back under another lease",
        _running,
        lambda j, t: j.hand_back(uuid.uuid4(), "w"),
        LeaseLost,
    ),
    ("heartbeat under another lease", _running, lambda j, t: j.heartbeat(uuid.uuid4()), LeaseLost),
    ("heartbeat a finished job", _completed, lambda j, t: j.heartbeat(t), LeaseLost),
    (
        "claim a completed job",
        _completed,
        lambda j, t: j.claim("w2", lease_seconds=LEASE),
        InvalidTransition,
    ),
    ("complete a completed job", _completed, lambda j, t: j.complete(t, "w"), LeaseLost),
    ("fail a completed job", _completed, lambda j, t: j.fail(t, "w", "x"), LeaseLost),
    (
        "cancel a completed job",
        _completed,
        lambda j, t: j.request_cancel("alice"),
        InvalidTransition,
    ),
    ("hand back a completed job", _completed, lambda j, t: j.hand_back(t, "w"), LeaseLost),
]


@pytest.mark.parametrize(
    ("setup", "attempt", "error"),
    [case[1:] for case in FORBIDDEN],
    ids=[case[0] for case in FORBIDDEN],
)
def test_forbidden_transition__raises_and_leaves_the_row_unchanged(
    pending: ReindexJob,
    setup: Callable[[ReindexJob], uuid.UUID],
    attempt: Callable[[ReindexJob, uuid.UUID], Any],
    error: type[Exception],
) -> None:
    token = setup(pending)
    before = snapshot(pending)
    events = event_kinds(pending)
    with pytest.raises(error):
        attempt(pending, token)
    assert snapshot(pending) == before
    assert event_kinds(pending) == events


def test_hand_back__refused_while_a_cancel_is_requested(pending: ReindexJob) -> None:
    token = claimed(pending)
    pending.request_cancel("alice")
    before = snapshot(pending)
    with pytest.raises(LeaseLost):
        pending.hand_back(token, "w1")
    assert snapshot(pending) == before


def test_reclaim__old_worker_loses_its_lease(pending: ReindexJob) -> None:
    old = claimed(pending, "w1")
    make_stale(pending)
    pending.claim("w2", lease_seconds=LEASE)
    before = snapshot(pending)
    with pytest.raises(LeaseLost):
        pending.heartbeat(old)
    with pytest.raises(LeaseLost):
        pending.complete(old, "w1")
    assert snapshot(pending) == before


def _insert(**fields: Any) -> None:
    with transaction.atomic():
        ReindexJob.objects.create(name="bad", source="jsonl:docs.jsonl", **fields)


@pytest.mark.parametrize("batch_size", [0, 10_001])
def test_constraint__batch_size_outside_the_range_is_rejected(batch_size: int) -> None:
    with pytest.raises(IntegrityError):
        _insert(batch_size=batch_size)
    assert not ReindexJob.objects.exists()


def test_constraint__pending_job_cannot_be_cancelling() -> None:
    with pytest.raises(IntegrityError):
        _insert(status=JobStatus.PENDING, cancel_requested_at=timezone.now())
    assert not ReindexJob.objects.exists()


def test_constraint__running_job_must_hold_a_lease() -> None:
    with pytest.raises(IntegrityError):
        _insert(status=JobStatus.RUNNING, lease_token=None)
    assert not ReindexJob.objects.exists()


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_constraint__failed_ratio_outside_zero_to_one_is_rejected(ratio: float) -> None:
    with pytest.raises(IntegrityError):
        _insert(max_failed_ratio=ratio)
    assert not ReindexJob.objects.exists()


def test_constraint__valid_row_is_accepted() -> None:
    _insert(batch_size=10_000, status=JobStatus.RUNNING, lease_token=uuid.uuid4())
    assert ReindexJob.objects.count() == 1
