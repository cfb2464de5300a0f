"""What operators do to jobs: create, cancel, retry the failed documents.

The command line, the JSON API, the dashboard forms and the admin all go through these functions,
so that every entry point validates the same way and uses the same guarded transitions.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from reindexer import conf
from reindexer.documents import MALFORMED_ERROR
from reindexer.errors import SpecError
from reindexer.models import (
    BatchFailure,
    BatchFailureQuerySet,
    EventKind,
    InvalidTransition,
    JobMode,
    JobStatus,
    ReindexJob,
)
from reindexer.progress import announce
from reindexer.sources import open_source
from reindexer.specs import MAX_DOCS_PER_SECOND, NAME_MAX, SHOWN_INPUT_CHARS, JobSpec


def _creator(user: AbstractBaseUser | None) -> User | None:
    """The user a job records as its creator: none for the command line or an anonymous user."""
    return user if isinstance(user, User) and user.is_authenticated else None


def actor_name(user: AbstractBaseUser | None) -> str:
    return user.get_username() if user is not None else "cli"


def create_job(
    spec: JobSpec,
    *,
    user: AbstractBaseUser | None = None,
    trace_context: dict[str, str] | None = None,
) -> ReindexJob:
    """Queue a job for `spec`, checked again (its source may have gone); raises SpecError and
    creates nothing if invalid."""
    spec = spec.revalidated()
    with transaction.atomic():
        job = ReindexJob.objects.create(
            **spec.model_dump(exclude={"name"}),
            name=spec.job_name,
            created_by=_creator(user),
            trace_context=trace_context or {},
        )
        job.log(
            EventKind.CREATED,
            actor_name(user),
            f"queued {job.source} into {job.store}/{job.collection}",
        )
        announce(job.pk)
    return job


def whole_job(job: ReindexJob) -> ReindexJob:
    """The job an operator acts on: a slice's sliced job, or the job itself."""
    if job.parent_id is None:
        return job
    return ReindexJob.objects.get(pk=job.parent_id)


def cancel_job(job: ReindexJob, *, user: AbstractBaseUser | None = None) -> ReindexJob:
    """Cancel a pending job, or request the cancel of a running one; raises InvalidTransition.

    A slice is not cancelled alone: the cancel stops its whole sliced job. A swap job awaiting
    approval is discarded; a pending swap job (handed back) drops what it had built.
    """
    from reindexer.swaps import actions, cutover  # they use this module's actor_name

    job = whole_job(job)
    if ReindexJob.objects.filter(pk=job.pk, status=JobStatus.AWAITING_APPROVAL).exists():
        return actions.discard_swap(job, user=user)
    with transaction.atomic():
        job.request_cancel(actor_name(user))
        announce(job.pk)
    if job.status == JobStatus.CANCELLED:
        cutover.drop_built(job, actor_name(user), "cancelled before it resumed")
    return job


def force_cancel_job(job: ReindexJob, *, user: AbstractBaseUser | None = None) -> ReindexJob:
    """Cancel a running job whose lease expired, with no worker to confirm it; raises
    InvalidTransition while its worker still renews the lease.

    A slice stands for its sliced job, which is force-cancelled once none of its running slices
    has a live worker: those slices are force-cancelled, the pending ones cancelled.
    """
    from reindexer.swaps import cutover

    job = whole_job(job)
    lease_seconds = conf.get().lease_seconds
    with transaction.atomic():
        if job.is_sliced and job.slice_jobs.exists():
            _force_cancel_sliced(job, actor_name(user), lease_seconds)
        else:
            job.force_cancel(actor_name(user), lease_seconds=lease_seconds)
        announce(job.pk)
    cutover.drop_built(job, actor_name(user), "force-cancelled")
    return job


def _force_cancel_sliced(job: ReindexJob, actor: str, lease_seconds: float) -> None:
    if job.status != JobStatus.RUNNING:
        raise InvalidTransition(
            f"job {job.pk} cannot be force-cancelled: it is {job.status}; only a running job"
            " whose lease expired can be"
        )
    live = job.slice_jobs.running().exclude(pk__in=job.slice_jobs.stale(lease_seconds))
    responding = live.order_by("slice_number").first()
    if responding is not None:
        raise InvalidTransition(
            f"job {job.pk} cannot be force-cancelled: the worker {responding.worker} of its slice"
            f" {responding.slice_number} still renews its lease (lease {lease_seconds:g}s)"
        )
    if job.cancel_requested_at is None:
        # The pending slices are cancelled at once, the stale running ones asked to stop.
        job.request_cancel(actor, reason="force cancel")
    for slice_job in job.slice_jobs.stale(lease_seconds).order_by("slice_number"):
        with contextlib.suppress(InvalidTransition):  # its worker came back meanwhile
            slice_job.force_cancel(actor, lease_seconds=lease_seconds)
    job.refresh_from_db()
    # Its slices have all ended: the job ends without a worker, saying so, once its own lease
    # (renewed by each slice's commit) has expired too; until then a worker may still finish it,
    # and the orphan sweep (reindexer.orphans) ends it after the lease.
    with contextlib.suppress(InvalidTransition):
        job.cancel_orphaned(actor, lease_seconds=lease_seconds)


def resume_job(job: ReindexJob, *, user: AbstractBaseUser | None = None) -> ReindexJob:
    """Queue a failed job again, to continue from its checkpoint with its counters; raises
    InvalidTransition unless it failed. A slice stands for its sliced job. A failed swap job
    dropped what it had built: it cannot resume, only run again."""
    job = whole_job(job)
    if job.mode == JobMode.SWAP:
        raise InvalidTransition(
            f"job {job.pk} cannot be resumed: a swap job that failed dropped the collection it"
            " was building; start the swap again"
        )
    with transaction.atomic():
        job.resume(actor_name(user))
        announce(job.pk)
    return job


# -- the live throttle -----------------------------------------------------------------------

RATE_FIELD = "max_docs_per_second"
_RATE_RANGE = f"between 0 and {MAX_DOCS_PER_SECOND:,} documents per second (0 for no limit)"


def limit_text(limit: float) -> str:
    """A limit as operators read it: 200, 1,000, 12.5."""
    if limit.is_integer():
        return f"{int(limit):,}"
    return f"{limit:,.2f}".rstrip("0").rstrip(".")


def checked_rate(rate: object) -> float | None:
    """The limit that `rate` asks for, as stored: None for none (0 or None), else documents per
    second; raises SpecError (field max_docs_per_second) for anything but a number in range."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        shown = repr(rate)
        if len(shown) > SHOWN_INPUT_CHARS:
            shown = shown[: SHOWN_INPUT_CHARS - 1] + "…"
        raise SpecError(
            f"the rate limit must be a number {_RATE_RANGE}, got {shown}", field=RATE_FIELD
        )
    value = float(rate)
    if not math.isfinite(value):
        raise SpecError(f"the rate limit must be a finite number, got {value}", field=RATE_FIELD)
    if not 0 <= value <= MAX_DOCS_PER_SECOND:
        raise SpecError(f"the rate limit must be {_RATE_RANGE}, got {value:g}", field=RATE_FIELD)
    return value or None


def rate_from_text(text: str) -> float | None:
    """An operator's typed rate (the command line, a form): "" or "0" for no limit; raises
    SpecError as checked_rate does."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        number = float(stripped)
    except ValueError:
        return checked_rate(stripped)  # refused, naming what was typed
    return checked_rate(number)


@dataclass(frozen=True)
class Throttled:
    """What set_throttle did: the whole job as it is now, whether its limit changed, and what an
    operator is told."""

    job: ReindexJob
    changed: bool
    message: str


def _throttle_detail(old: float | None, new: float | None) -> str:
    if new is None:
        return "limit lifted"
    if old is None:
        return f"limit set to {limit_text(new)} docs/s"
    return f"limit changed from {limit_text(old)} to {limit_text(new)} docs/s"


def set_throttle(job: ReindexJob, rate: object, *, user: AbstractBaseUser | None) -> Throttled:
    """Set, change or lift (0 or None) the rate limit of a pending or running job; a slice
    stands for its sliced job, whose limit its slices share.

    Raises SpecError for a rate that is not a number in range, InvalidTransition for a job that
    has ended. The same limit again changes nothing and logs nothing. The workers learn of a
    change at their next batch, or at once while they wait (the announce NOTIFYs them)."""
    limit = checked_rate(rate)
    job = whole_job(job)
    active = (JobStatus.PENDING, JobStatus.RUNNING)
    with transaction.atomic():
        row = (
            ReindexJob.objects.select_for_update()
            .filter(pk=job.pk)
            .values_list("status", RATE_FIELD)
            .first()
        )
        if row is None or row[0] not in active:
            raise InvalidTransition(
                f"job {job.pk} is {row[0] if row else 'gone'}: only a pending or running job's"
                " rate limit can be changed"
            )
        old = row[1]
        if old == limit:
            job.refresh_from_db()
            already = f"limit already {limit_text(limit)} docs/s" if limit else "no limit already"
            return Throttled(job, False, f"job {job.pk}: {already}; nothing changed")
        updated = ReindexJob.objects.filter(
            pk=job.pk, status__in=active, **{RATE_FIELD: old}
        ).update(**{RATE_FIELD: limit}, updated_at=Now())
        if updated != 1:  # unreachable under the row lock; a guard, as every write has
            raise InvalidTransition(f"job {job.pk} changed meanwhile; try again")
        detail = _throttle_detail(old, limit)
        job.log(EventKind.THROTTLED, actor_name(user), detail)
        announce(job.pk)
    job.refresh_from_db()
    return Throttled(job, True, f"job {job.pk}: {detail}")


def job_failures(job: ReindexJob) -> BatchFailureQuerySet:
    """The failures recorded for `job`: a sliced job's are those of its slices (and its own)."""
    if not job.is_sliced:
        return job.failures.all()
    return BatchFailure.objects.filter(Q(job_id=job.pk) | Q(job__parent_id=job.pk))


def retryable_failures(job: ReindexJob) -> BatchFailureQuerySet:
    """The job's unresolved failures that a retry could fix (not malformed records)."""
    return job_failures(job).unresolved().exclude(error_type=MALFORMED_ERROR)


def failed_doc_ids(job: ReindexJob) -> list[str]:
    """The document ids of the job's retryable failures, in failure order, deduplicated."""
    ids: dict[str, None] = {}
    for doc_ids in retryable_failures(job).values_list("doc_ids", flat=True):
        ids.update(dict.fromkeys(doc_ids))
    return list(ids)


def resolve_retried_failures(retry: ReindexJob) -> int:
    """Once `retry` completed: resolve the original's failures whose documents it wrote.

    A failure whose document failed again stays unresolved on the original job (the new failure
    is recorded on the retry too), so a later retry can still pick it up.
    """
    if retry.retry_of_id is None:
        return 0
    failed_again: set[str] = set()
    for doc_ids in retry.failures.values_list("doc_ids", flat=True):
        failed_again.update(doc_ids)
    original = ReindexJob.objects.get(pk=retry.retry_of_id)
    written = [
        failure.pk
        for failure in retryable_failures(original).only("pk", "doc_ids")
        if failed_again.isdisjoint(failure.doc_ids)
    ]
    return BatchFailure.objects.filter(pk__in=written).update(resolved_at=timezone.now())


def _retry_target(job: ReindexJob) -> dict[str, str]:
    """Where a retry writes: a completed swap job's failed documents go into the collection it
    built (which its alias serves), in place; a swap job that did not complete has none."""
    if job.mode != JobMode.SWAP:
        return {}
    if job.status != JobStatus.COMPLETED:
        raise InvalidTransition(
            f"job {job.pk} is a swap job that {job.status}: it dropped the collection it was"
            " building, so there is nothing to retry into; start the swap again"
        )
    from reindexer.swaps.names import build_collection

    return {"mode": JobMode.FULL, "approve": "auto", "collection": build_collection(job)}


def retry_failed(
    job: ReindexJob,
    *,
    user: AbstractBaseUser | None = None,
    trace_context: dict[str, str] | None = None,
) -> ReindexJob:
    """Queue a new job over only the documents of `job`'s retryable failures (for a sliced job,
    those of all its slices; a slice stands for its sliced job)."""
    job = whole_job(job)
    open_source(job.source)
    with transaction.atomic():
        # Locked, so that two clicks (or two tabs, or the API) cannot queue two retries.
        job = ReindexJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_finished:
            raise InvalidTransition(
                f"job {job.pk} is {job.status}; retry its failures once it has finished"
            )
        if job.retries_queued.active().exists():
            raise InvalidTransition(f"a retry of job {job.pk}'s failures is already queued")
        if not retryable_failures(job).exists():
            raise InvalidTransition(
                f"job {job.pk} has no unresolved failures to retry (malformed records cannot be"
                " retried: fix them in the source and start a new job)"
            )
        retry = ReindexJob.objects.create(
            **{**job.spec_copy(), "max_failed_ratio": 1.0, **_retry_target(job)},
            name=f"retry failed of #{job.pk} {job.name}"[:NAME_MAX],
            retry_of=job,
            created_by=_creator(user),
            trace_context=trace_context or {},
        )
        actor = actor_name(user)
        job.log(EventKind.RETRY_FAILED_QUEUED, actor, f"queued as job {retry.pk}")
        retry.log(EventKind.CREATED, actor, f"retrying the failed documents of job {job.pk}")
        announce(job.pk)
        announce(retry.pk)
    return retry
