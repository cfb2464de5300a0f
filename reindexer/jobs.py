"""What operators do to jobs: create, cancel, retry the failed documents, report status.

The command line, the JSON API, the dashboard forms and the admin all go through these functions,
so that every entry point validates the same way and uses the same guarded transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction
from django.utils import timezone

from reindexer import conf
from reindexer.documents import MALFORMED_ERROR
from reindexer.embedders import validate_embedder
from reindexer.errors import SpecError
from reindexer.models import (
    MAX_BATCH_SIZE,
    MIN_BATCH_SIZE,
    BatchFailure,
    BatchFailureQuerySet,
    EventKind,
    InvalidTransition,
    JobStatus,
    ReindexJob,
)
from reindexer.progress import announce
from reindexer.sources import open_source
from reindexer.stores import validate_collection, validate_store

MAX_RETRIES_LIMIT = 20


@dataclass(frozen=True)
class JobSpec:
    source: str
    embedder: str = "hashing"
    store: str = "sqlite-vec"
    collection: str = "default"
    batch_size: int = 200
    max_retries: int = 3
    max_failed_ratio: float = 0.1
    name: str = ""

    def validate(self) -> None:
        """Raise SpecError with an operator-readable message for the first thing wrong."""
        if not MIN_BATCH_SIZE <= self.batch_size <= MAX_BATCH_SIZE:
            raise SpecError(
                f"batch size must be between {MIN_BATCH_SIZE} and {MAX_BATCH_SIZE}, "
                f"got {self.batch_size}"
            )
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise SpecError(
                f"max retries must be between 0 and {MAX_RETRIES_LIMIT}, got {self.max_retries}"
            )
        if not 0.0 <= self.max_failed_ratio <= 1.0:
            raise SpecError(
                f"max failed ratio must be between 0 and 1, got {self.max_failed_ratio}"
            )
        for field_name, limit in (
            ("name", 200),
            ("source", 1000),
            ("store", 1000),
            ("embedder", 200),
            ("collection", 200),
        ):
            if len(getattr(self, field_name)) > limit:
                raise SpecError(f"{field_name} must be at most {limit} characters")
        validate_embedder(self.embedder)
        validate_store(self.store)
        validate_collection(self.collection)
        open_source(self.source)


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
    """Validate `spec` and queue a job for it; raises SpecError and creates nothing if invalid."""
    spec.validate()
    with transaction.atomic():
        job = ReindexJob.objects.create(
            name=(spec.name or spec.source)[:200],
            source=spec.source,
            embedder=spec.embedder,
            store=spec.store,
            collection=spec.collection,
            batch_size=spec.batch_size,
            max_retries=spec.max_retries,
            max_failed_ratio=spec.max_failed_ratio,
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


def cancel_job(job: ReindexJob, *, user: AbstractBaseUser | None = None) -> ReindexJob:
    """Cancel a pending job, or request the cancel of a running one; raises InvalidTransition."""
    with transaction.atomic():
        job.request_cancel(actor_name(user))
        announce(job.pk)
    return job


def retryable_failures(job: ReindexJob) -> BatchFailureQuerySet:
    """The job's unresolved failures that a retry could fix (not malformed records)."""
    return job.failures.unresolved().exclude(error_type=MALFORMED_ERROR)


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


def retry_failed(
    job: ReindexJob,
    *,
    user: AbstractBaseUser | None = None,
    trace_context: dict[str, str] | None = None,
) -> ReindexJob:
    """Queue a new job over only the documents of `job`'s retryable failures."""
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
            name=f"retry failed of #{job.pk} {job.name}"[:200],
            source=job.source,
            embedder=job.embedder,
            store=job.store,
            collection=job.collection,
            batch_size=job.batch_size,
            max_retries=job.max_retries,
            max_failed_ratio=1.0,
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


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def job_status(job: ReindexJob) -> dict[str, Any]:
    """The fields of `reindex status --json` and of the JSON API (DESIGN.md)."""
    now = timezone.now()
    lease = conf.get().lease_seconds
    return {
        "id": job.pk,
        "name": job.name,
        "status": job.status,
        "total_docs": job.total_docs,
        "processed_docs": job.processed_docs,
        "failed_docs": job.failed_docs,
        "skipped_docs": job.skipped_docs,
        "written_docs": job.written_docs,
        "progress": round(job.progress, 4),
        "batches_done": job.batches_done,
        "batches_failed": job.batches_failed,
        "retries": job.retries,
        "docs_per_second": _round(job.docs_per_second(now)),
        "eta_seconds": _round(job.eta_seconds(now)),
        "heartbeat_at": _iso(job.heartbeat_at),
        "heartbeat_age_seconds": _round(job.heartbeat_age(now)),
        "stalled": job.is_stalled(lease, now),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "cancel_requested": job.cancel_requested_at is not None,
        "error": job.error,
        "source": job.source,
        "embedder": job.embedder,
        "store": job.store,
        "collection": job.collection,
        "batch_size": job.batch_size,
        "max_retries": job.max_retries,
        "max_failed_ratio": job.max_failed_ratio,
        "worker": job.worker,
        "retry_of": job.retry_of_id,
    }


def status_label(job: ReindexJob) -> str:
    """How the UI names the state: 'cancelling' and 'completed with errors' included."""
    if job.is_cancelling:
        return "cancelling"
    if job.status == JobStatus.COMPLETED and job.failed_docs:
        return "completed with errors"
    return str(job.status)
