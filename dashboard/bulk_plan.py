"""Bulk cancel and bulk retry: what would happen to each selected job, and doing it.

The plan is read in one query (whatever the number of jobs) and only informs the confirmation;
doing it goes through reindexer.jobs per job, each in its own transaction, so the guarded
transitions decide again and one refusal never stops the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q

from reindexer import telemetry
from reindexer.documents import MALFORMED_ERROR
from reindexer.errors import SpecError
from reindexer.jobs import cancel_job, retry_failed
from reindexer.models import (
    BatchFailure,
    BatchFailureQuerySet,
    InvalidTransition,
    JobStatus,
    ReindexJob,
)
from reindexer.presenter import present

BULK_MAX = 500


class Action(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"

    @property
    def heading(self) -> str:
        return "Bulk cancel" if self is Action.CANCEL else "Bulk retry of the failed documents"

    @property
    def button(self) -> str:
        return "Cancel these jobs" if self is Action.CANCEL else "Retry their failed documents"


@dataclass(frozen=True)
class Fate:
    """What an action does to a job in some state, said of one job and of several."""

    one: str
    many: str
    allowed: bool
    each: str  # what the confirmation says beside one job

    def line(self, n: int) -> str:
        return f"{n} {self.one if n == 1 else self.many}"


STOP = Fate(
    "running job will be asked to stop",
    "running jobs will be asked to stop",
    True,
    "will be asked to stop at its next batch",
)
CANCEL = Fate(
    "pending job will be cancelled", "pending jobs will be cancelled", True, "will be cancelled"
)
ALREADY_CANCELLING = Fate(
    "job is already cancelling",
    "jobs are already cancelling",
    False,
    "left alone: already cancelling",
)
CANNOT_CANCEL = Fate(
    "finished job cannot be cancelled",
    "finished jobs cannot be cancelled",
    False,
    "left alone: it has finished",
)
RETRY = Fate(
    "finished job will have its failed documents queued as a new job",
    "finished jobs will have their failed documents queued as new jobs",
    True,
    "its failed documents will be queued as a new job",
)
NOT_FINISHED = Fate(
    "unfinished job cannot be retried until it finishes",
    "unfinished jobs cannot be retried until they finish",
    False,
    "left alone: it has not finished",
)
RETRY_QUEUED = Fate(
    "job already has a retry queued",
    "jobs already have a retry queued",
    False,
    "left alone: a retry is already queued",
)
NOTHING_TO_RETRY = Fate(
    "job has no failed documents to retry",
    "jobs have no failed documents to retry",
    False,
    "left alone: no failed documents to retry",
)


@dataclass(frozen=True)
class Planned:
    job: ReindexJob
    fate: Fate


@dataclass(frozen=True)
class Plan:
    action: Action
    jobs: list[Planned]
    missing: list[int]

    @property
    def ids(self) -> list[int]:
        return [planned.job.pk for planned in self.jobs]

    @property
    def any_allowed(self) -> bool:
        return any(planned.fate.allowed for planned in self.jobs)

    def summary(self) -> list[str]:
        """One line per fate, the allowed first: "3 running jobs will be asked to stop"."""
        counts = Counter(planned.fate for planned in self.jobs)
        fates = sorted(counts, key=lambda fate: not fate.allowed)
        lines = [fate.line(counts[fate]) for fate in fates]
        if self.missing:
            n = len(self.missing)
            lines.append(
                f"{n} selected job{'' if n == 1 else 's'} no longer exist{'s' if n == 1 else ''}"
            )
        return lines


def plan(action: Action, ids: Iterable[int]) -> Plan:
    wanted = list(dict.fromkeys(ids))
    jobs = ReindexJob.objects.filter(pk__in=wanted).order_by("-created_at", "-id")
    if action is Action.RETRY:
        jobs = jobs.annotate(
            has_retryable=Exists(_retryable_failures_of(OuterRef("pk"))),
            retry_active=Exists(ReindexJob.objects.active().filter(retry_of=OuterRef("pk"))),
        )
    found = list(jobs)
    known = {job.pk for job in found}
    planned = [Planned(job, _fate(action, job)) for job in found]
    return Plan(action, planned, [pk for pk in wanted if pk not in known])


def _retryable_failures_of(job: OuterRef) -> BatchFailureQuerySet:
    """reindexer.jobs.retryable_failures as a subquery: the outer query's job's unresolved
    failures (a sliced job's are its slices'), malformed records left out."""
    return (
        BatchFailure.objects.filter(Q(job=job) | Q(job__parent=job))
        .unresolved()
        .exclude(error_type=MALFORMED_ERROR)
    )


def _fate(action: Action, job: ReindexJob) -> Fate:
    if action is Action.CANCEL:
        if job.is_cancelling:
            return ALREADY_CANCELLING
        if job.is_finished:
            return CANNOT_CANCEL
        return STOP if job.status == JobStatus.RUNNING else CANCEL
    if not job.is_finished:
        return NOT_FINISHED
    if getattr(job, "retry_active", False):
        return RETRY_QUEUED
    if not getattr(job, "has_retryable", False):
        return NOTHING_TO_RETRY
    return RETRY


@dataclass(frozen=True)
class Outcome:
    job_id: int
    name: str
    done: bool
    message: str


def carry_out(plan: Plan, user: AbstractBaseUser) -> list[Outcome]:
    """Apply the action to every planned job, whatever its planned fate: the state may have
    changed since the confirmation, and the guarded transition gives the reason of a refusal."""
    outcomes = [_carry_out_one(plan.action, planned.job, user) for planned in plan.jobs]
    outcomes += [Outcome(pk, "", False, "it no longer exists") for pk in plan.missing]
    return outcomes


def _carry_out_one(action: Action, job: ReindexJob, user: AbstractBaseUser) -> Outcome:
    try:
        if action is Action.CANCEL:
            cancel_job(job, user=user)
            message = _cancelled(job)
        else:
            retry = retry_failed(job, user=user, trace_context=telemetry.current_trace_context())
            message = f"retry of the failed documents queued as job #{retry.pk}"
    except (InvalidTransition, SpecError) as exc:
        return Outcome(job.pk, job.name, False, str(exc))
    return Outcome(job.pk, job.name, True, message)


def _cancelled(job: ReindexJob) -> str:
    if not job.is_cancelling:
        return "cancelled"
    if present(job).stalled:
        return "cancel requested, but its worker is not responding: use Force cancel"
    return "cancel requested; its worker stops after the current batch"
