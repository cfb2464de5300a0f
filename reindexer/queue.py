"""The queue as workers see it: pending jobs in claim order, and which job each one waits for.

A job waits for the running job that writes its store and collection (one writer per
collection); failing that, for the nearest job ahead of it in the queue on the same collection,
which will write it first.
"""

from __future__ import annotations

from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from reindexer.models import JobStatus, ReindexJob, ReindexJobQuerySet


def _same_collection() -> ReindexJobQuerySet:
    """Top-level jobs on the outer job's store and collection: slices run under their sliced
    job, which is the one holding (or waiting for) the collection."""
    return (
        ReindexJob.objects.filter(store=OuterRef("store"), collection=OuterRef("collection"))
        .filter(parent__isnull=True)
        .exclude(pk=OuterRef("pk"))
    )


def with_waiting_for(jobs: ReindexJobQuerySet) -> ReindexJobQuerySet:
    """`jobs` annotated with `waiting_for`: the id of the job it waits for, or None.

    Two correlated subqueries in the one query of a page, served by the one-writer index and
    the pending-claim index; never a query per row.
    """
    holder = _same_collection().running().values("pk")[:1]
    ahead = (
        _same_collection()
        .pending()
        # The plain bound lets the pending-claim index start at this job, scanning backwards;
        # the OR alone would be a filter over the whole queue.
        .filter(created_at__lte=OuterRef("created_at"))
        .filter(
            Q(created_at__lt=OuterRef("created_at"))
            | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
        )
        .order_by("-created_at", "-id")
        .values("pk")[:1]
    )
    return jobs.annotate(waiting_for=Coalesce(Subquery(holder), Subquery(ahead)))


def pending_in_claim_order() -> ReindexJobQuerySet:
    """Pending jobs in the order workers claim them, each with `waiting_for`."""
    return with_waiting_for(ReindexJob.objects.pending().in_claim_order())


def pending_page(offset: int, limit: int) -> ReindexJobQuerySet:
    """One page of `pending_in_claim_order()`, in one query that evaluates `waiting_for` for
    the page's rows only (an OFFSET alone would evaluate it for every row it skips)."""
    window = ReindexJob.objects.pending().in_claim_order()[offset : offset + limit]
    return with_waiting_for(ReindexJob.objects.filter(pk__in=window.values("pk"))).in_claim_order()


def running_jobs() -> ReindexJobQuerySet:
    """Running jobs, longest-running first: the queue's context."""
    return ReindexJob.objects.running().order_by(F("started_at").asc(nulls_last=True), "id")


def annotated_waiting_for(job: ReindexJob) -> int | None:
    """`waiting_for` of a job read through `with_waiting_for`: only a pending job waits."""
    value: int | None = getattr(job, "waiting_for", None)
    # A slice waits for a worker, never for a writer: its sliced job holds the collection.
    return value if job.status == JobStatus.PENDING and job.parent_id is None else None


def waiting_for(job: ReindexJob) -> int | None:
    """The id of the job that `job` waits for; None unless it is pending behind one."""
    if job.status != JobStatus.PENDING or job.parent_id is not None:
        return None
    annotated = with_waiting_for(ReindexJob.objects.filter(pk=job.pk)).first()
    value: int | None = getattr(annotated, "waiting_for", None)
    return value
