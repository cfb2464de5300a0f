"""Jobs, their batch failures and their event timeline, with guarded state transitions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from reindexer import specs
from reindexer.permissions import OPERATE_CODENAME
from reindexer.wakeup import notify_workers


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    """Queued, or handed back, and waiting for a worker."""
    RUNNING = "running", "Running"
    """Held by the worker named in `worker`, under `lease_token`."""
    COMPLETED = "completed", "Completed"
    """Every record was handled; some may have failed within the error budget."""
    FAILED = "failed", "Failed"
    """Stopped by a fatal error or by exceeding the error budget; see `error`."""
    CANCELLED = "cancelled", "Cancelled"
    """Stopped on an operator's request."""
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    """A swap job (--approve manual) that built and verified its collection, holding no lease,
    until an operator swaps the alias to it (completed) or discards it (cancelled)."""


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# For each target status, the statuses a job may come from.
ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
    # From running: handed back; from failed: resumed from its checkpoint by an operator;
    # from cancelled: only a slice, stopped with its job and reopened when the job resumes.
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset({JobStatus.RUNNING, JobStatus.AWAITING_APPROVAL}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.CANCELLED: frozenset(
        {JobStatus.PENDING, JobStatus.RUNNING, JobStatus.AWAITING_APPROVAL}
    ),
    JobStatus.AWAITING_APPROVAL: frozenset({JobStatus.RUNNING}),
}

# The per-batch counters, in the order the engine's commit increments them.
BATCH_COUNTERS = (
    "processed_docs",
    "failed_docs",
    "skipped_docs",
    "batches_done",
    "batches_failed",
    "retries",
)


def lease_fence(pk: int, token: uuid.UUID) -> dict[str, Any]:
    """{field: value} that a write by the worker holding `token` on job `pk` must match.

    The one definition of "this worker still holds the lease", for `leased()` and the engine's
    raw batch commit alike.
    """
    return {"id": pk, "status": JobStatus.RUNNING.value, "lease_token": token}


def storable(text: str) -> str:
    """`text` with NUL characters spelled out: PostgreSQL's text and jsonb refuse them."""
    return text.replace("\x00", "\\x00")


class InvalidTransition(Exception):
    """A state change that the job's current state does not allow; nothing was changed."""


class LeaseLost(InvalidTransition):
    """The worker no longer holds the job's lease (it was reclaimed, cancelled or finished)."""


class JobStuck(InvalidTransition):
    """A stale job was failed instead of reclaimed: its workers kept dying without progress."""


# Reclaims that found no progress since the claim before, after which the next one fails the job.
MAX_RECLAIMS_WITHOUT_PROGRESS = 3


class EventKind(models.TextChoices):
    CREATED = "created"
    CLAIMED = "claimed"
    CHECKPOINT_RESUMED = "checkpoint_resumed"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    HANDED_BACK = "handed_back"
    RECLAIMED = "reclaimed"
    RETRY_FAILED_QUEUED = "retry_failed_queued"
    RESUMED = "resumed"
    # A sliced job's source was split into its slices (or its unfinished slices reopened).
    SLICED = "sliced"
    # A phase of the job began or ended (its detail says which, and how long it took).
    PHASE = "phase"
    # The job's rate limit was set, changed or lifted while it ran (or waited).
    THROTTLED = "throttled"
    # Documents that vanished from the source were deleted from the collection (--cleanup full).
    CLEANED_UP = "cleaned_up"
    # A webhook delivery for one of the job's events: its response code, or why it failed.
    WEBHOOK = "webhook"
    # Swap mode: the verification passed and the job waits for an operator (--approve manual).
    AWAITING_APPROVAL = "awaiting_approval"
    # Swap mode: the alias was moved to the job's collection (its detail: from what, to what).
    SWAPPED = "swapped"
    # Swap mode: the built collection was dropped, and the alias left as it was.
    DISCARDED = "discarded"


class Phase(models.TextChoices):
    """The stretches of a running job, in order (DESIGN.md, `status --json` `phase`)."""

    COUNTING = "counting"
    WRITING = "writing"
    # The store builds its search index (pgvector's HNSW): written is not yet searchable.
    INDEXING = "indexing"
    VERIFYING = "verifying"
    SWAPPING = "swapping"


class JobMode(models.TextChoices):
    FULL = "full"
    """Embed and write every document of the source."""
    INCREMENTAL = "incremental"
    """Skip the documents whose content hash matches their last successful write."""
    SWAP = "swap"
    """Build `collection__<job id>` while `collection`, an alias, serves readers; verify it, then
    move the alias to it (blue/green)."""


class Approval(models.TextChoices):
    AUTO = "auto"
    """Swap as soon as the verification passes."""
    MANUAL = "manual"
    """Wait, awaiting approval, for an operator's Swap or Discard."""


class Cleanup(models.TextChoices):
    NONE = "none"
    FULL = "full"
    """Once the job completes, delete the documents that vanished from the source."""


class ReindexJobQuerySet(models.QuerySet["ReindexJob"]):
    def pending(self) -> ReindexJobQuerySet:
        """Jobs waiting for a worker."""
        return self.filter(status=JobStatus.PENDING)

    def running(self) -> ReindexJobQuerySet:
        """Jobs held by a worker, stale or not."""
        return self.filter(status=JobStatus.RUNNING)

    def active(self) -> ReindexJobQuerySet:
        """Jobs that are not finished yet."""
        return self.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING])

    def finished(self) -> ReindexJobQuerySet:
        """Jobs in a final state."""
        return self.filter(status__in=FINISHED_STATUSES)

    def stale(self, lease_seconds: float) -> ReindexJobQuerySet:
        """Running jobs whose worker has not renewed its lease in time, by the database's clock."""
        return self.running().filter(heartbeat_at__lt=lease_cutoff(lease_seconds))

    def top_level(self) -> ReindexJobQuerySet:
        """Jobs as operators queue them: every job but the slices of a sliced one."""
        return self.filter(parent__isnull=True)

    def orphaned_cancels(self, lease_seconds: float) -> ReindexJobQuerySet:
        """Running jobs asked to cancel whose lease expired: no worker is left to confirm it.

        A sliced job qualifies once none of its slices is still active.
        """
        return (
            self.stale(lease_seconds)
            .filter(cancel_requested_at__isnull=False)
            .exclude(Exists(ReindexJob.objects.active().filter(parent=OuterRef("pk"))))
        )

    def leased(self, pk: int, token: uuid.UUID) -> ReindexJobQuerySet:
        """The job `pk` while `token` holds its running lease."""
        return self.filter(**lease_fence(pk, token))

    def in_claim_order(self) -> ReindexJobQuerySet:
        """Oldest first: the order in which workers claim."""
        return self.order_by("created_at", "id")

    def unheld(self) -> ReindexJobQuerySet:
        """Jobs whose store and collection no other running job writes (one writer each).

        A slice is never held: its sliced job holds the collection for all of its slices.
        """
        writer = ReindexJob.objects.running().filter(
            store=OuterRef("store"), collection=OuterRef("collection"), parent__isnull=True
        )
        return self.exclude(Q(parent__isnull=True) & Exists(writer.exclude(pk=OuterRef("pk"))))

    def claimable(self, lease_seconds: float) -> ReindexJobQuerySet:
        """Pending jobs and stale running jobs, oldest first, but for those whose collection
        another running job writes: the worker's claim order. Leases are compared with the
        database's clock, so a worker whose clock is off can neither steal nor keep a job.

        A sliced job whose slices run is not stale however old its own heartbeat: its slices
        are the ones claimed. Once they have all ended, it is claimed to be finished.
        """
        slices_active = Exists(ReindexJob.objects.active().filter(parent=OuterRef("pk")))
        parent_runs = Exists(
            ReindexJob.objects.running().filter(pk=OuterRef("parent"), parent__isnull=True)
        )
        return (
            self.filter(
                Q(status=JobStatus.PENDING)
                | Q(status=JobStatus.RUNNING, heartbeat_at__lt=lease_cutoff(lease_seconds))
            )
            .exclude(Q(status=JobStatus.RUNNING) & slices_active)
            # A stale job asked to cancel is not run again only to stop: it is ended as an
            # orphan (`orphaned_cancels`), by whoever sweeps first.
            .exclude(status=JobStatus.RUNNING, cancel_requested_at__isnull=False)
            # A slice runs only while its job does (not while it is still being split).
            .exclude(Q(parent__isnull=False) & ~parent_runs)
            .unheld()
            .in_claim_order()
        )


# What a job queued again from its checkpoint (a resume, a reopened slice) starts without: its
# end, its error, its worker and lease, a cancel request (a failed sliced job had asked its
# slices to stop), and its count of reclaims without progress. Its counters stay.
REQUEUED: dict[str, Any] = {
    "finished_at": None,
    "error": "",
    "worker": "",
    "lease_token": None,
    "heartbeat_at": None,
    "cancel_requested_at": None,
    "reclaims_without_progress": 0,
}


def lease_cutoff(lease_seconds: float) -> Any:
    """The heartbeat before which a lease has expired, as an expression of the database's clock."""
    return Now() - timedelta(seconds=lease_seconds)


class ReindexJob(models.Model):
    name = models.CharField(max_length=specs.NAME_MAX)
    status = models.CharField(
        max_length=max(len(value) for value in JobStatus.values),
        choices=JobStatus.choices,
        default=JobStatus.PENDING,
    )

    source = models.CharField(
        max_length=specs.SOURCE_MAX, help_text="For example jsonl:corpus/docs.jsonl"
    )
    embedder = models.CharField(max_length=specs.EMBEDDER_MAX, default="hashing")
    store = models.CharField(max_length=specs.STORE_MAX, default="sqlite-vec")
    collection = models.CharField(max_length=specs.COLLECTION_MAX, default="default")
    batch_size = models.PositiveIntegerField(default=200)
    max_retries = models.PositiveIntegerField(default=3)
    max_failed_ratio = models.FloatField(default=0.1)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries_queued"
    )

    total_docs = models.PositiveBigIntegerField(null=True, blank=True)
    processed_docs = models.PositiveBigIntegerField(default=0)
    failed_docs = models.PositiveBigIntegerField(default=0)
    skipped_docs = models.PositiveBigIntegerField(default=0)
    batches_done = models.PositiveBigIntegerField(default=0)
    batches_failed = models.PositiveBigIntegerField(default=0)
    retries = models.PositiveBigIntegerField(default=0)
    checkpoint = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Set by every write, so that a relay can find the rows that changed since it last looked.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    worker = models.CharField(max_length=200, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    error = models.TextField(blank=True)
    # The last error met while the job went on (a retried batch, a reclaim), so a job that is
    # slow or stuck tells its story before it ends.
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Stuck-job detection: processed_docs when last claimed, and reclaims that found it unchanged.
    processed_at_claim = models.PositiveBigIntegerField(default=0)
    reclaims_without_progress = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    trace_context = models.JSONField(default=dict, blank=True)
    # The phase the job is in while it runs (its last one once it ended); "" before it starts.
    phase = models.CharField(
        max_length=max(len(v) for v in Phase.values), choices=Phase.choices, blank=True
    )
    # The embedder's dimensions, known once the job opened its embedder (openai: learned).
    dimensions = models.PositiveIntegerField(null=True, blank=True)
    # Sliced jobs: `slices` > 1 splits the source into that many slices, each a job of its own
    # (`parent`, `slice_number` from 1, `slice_bounds` its range of the source) that workers
    # claim, lease, checkpoint and resume alone. Their counters add up in the sliced job's.
    slices = models.PositiveSmallIntegerField(default=1)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="slice_jobs"
    )
    slice_number = models.PositiveSmallIntegerField(null=True, blank=True)
    slice_bounds = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=20, choices=JobMode.choices, default=JobMode.FULL)
    cleanup = models.CharField(max_length=10, choices=Cleanup.choices, default=Cleanup.NONE)
    # The whole job's rate limit in documents per second; null for none. Changed live (throttle);
    # the slices of a sliced job share their parent's.
    max_docs_per_second = models.FloatField(null=True, blank=True)
    # Swap mode: who moves the alias once the verification passed; and the verification's
    # results (the cutover gate: verify, count, canary), {} until it ran.
    approve = models.CharField(max_length=10, choices=Approval.choices, default=Approval.AUTO)
    verification = models.JSONField(default=dict, blank=True)

    objects: ClassVar[ReindexJobQuerySet] = ReindexJobQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [(OPERATE_CODENAME, "Can create, cancel and retry reindex jobs")]
        indexes = [
            # The claim query: pending jobs, oldest first.
            models.Index(
                fields=["created_at", "id"],
                name="reindexjob_pending_claim",
                condition=Q(status="pending"),
            ),
            # The reclaim query: running jobs by heartbeat age.
            models.Index(
                fields=["heartbeat_at"],
                name="reindexjob_running_heartbeat",
                condition=Q(status="running"),
            ),
            models.Index(fields=["status", "-created_at"], name="reindexjob_status_created"),
            # The lists' default order, and their filters by store and by collection.
            models.Index(fields=["-created_at", "-id"], name="reindexjob_created_order"),
            models.Index(fields=["store", "-created_at"], name="reindexjob_store_created"),
            models.Index(fields=["collection", "-created_at"], name="reindexjob_coll_created"),
            # A job's retries, on its detail page: almost no job has retry_of set, so SQLite's
            # planner would rather scan the whole list index than use a plain foreign-key index.
            models.Index(
                fields=["retry_of", "-created_at", "-id"],
                name="reindexjob_retry_created",
                condition=Q(retry_of__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    batch_size__gte=specs.MIN_BATCH_SIZE, batch_size__lte=specs.MAX_BATCH_SIZE
                ),
                name="reindexjob_batch_size_range",
            ),
            models.CheckConstraint(
                condition=Q(max_failed_ratio__gte=0, max_failed_ratio__lte=1),
                name="reindexjob_failed_ratio_range",
            ),
            models.CheckConstraint(
                condition=~Q(status="pending", cancel_requested_at__isnull=False),
                name="reindexjob_pending_not_cancelling",
            ),
            models.CheckConstraint(
                condition=~Q(status="running", lease_token__isnull=True),
                name="reindexjob_running_has_lease",
            ),
            # One writer per collection: a second job on it waits as pending (see `unheld`).
            # A sliced job holds it for its slices, which are not counted.
            models.UniqueConstraint(
                fields=["store", "collection"],
                condition=Q(status="running", parent__isnull=True),
                name="reindexjob_one_writer_per_collection",
            ),
            models.UniqueConstraint(
                fields=["parent", "slice_number"],
                condition=Q(parent__isnull=False),
                name="reindexjob_one_row_per_slice",
            ),
            models.CheckConstraint(
                condition=Q(slices__gte=1, slices__lte=specs.MAX_SLICES),
                name="reindexjob_slices_range",
            ),
            models.CheckConstraint(
                condition=Q(max_docs_per_second__isnull=True)
                | Q(max_docs_per_second__gt=0, max_docs_per_second__lte=specs.MAX_DOCS_PER_SECOND),
                name="reindexjob_rate_limit_range",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    # -- derived figures ---------------------------------------------------------------------

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_cancelling(self) -> bool:
        return self.status == JobStatus.RUNNING and self.cancel_requested_at is not None

    @property
    def is_sliced(self) -> bool:
        """Whether this job runs as slices (it is their parent)."""
        return self.slices > 1 and self.parent_id is None

    @property
    def is_slice(self) -> bool:
        return self.parent_id is not None

    def spec_copy(self) -> dict[str, Any]:
        """The fields a job made from this one (a slice, a retry) runs with, as this one does."""
        return {
            "source": self.source,
            "embedder": self.embedder,
            "store": self.store,
            "collection": self.collection,
            "batch_size": self.batch_size,
            "max_retries": self.max_retries,
            "max_failed_ratio": self.max_failed_ratio,
            "mode": self.mode,
            "cleanup": self.cleanup,
            "approve": self.approve,
        }

    @property
    def written_docs(self) -> int:
        return self.processed_docs - self.failed_docs - self.skipped_docs

    @property
    def progress(self) -> float:
        if self.status == JobStatus.COMPLETED:
            return 1.0
        if not self.total_docs:
            return 0.0
        return min(1.0, self.processed_docs / self.total_docs)

    def elapsed_seconds(self, now: datetime | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or now or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    def docs_per_second(self, now: datetime | None = None) -> float | None:
        elapsed = self.elapsed_seconds(now)
        if not elapsed:
            return None
        return self.processed_docs / elapsed

    def eta_seconds(self, now: datetime | None = None) -> float | None:
        if self.is_finished or self.total_docs is None:
            return None
        rate = self.docs_per_second(now)
        if not rate:
            return None
        return max(0.0, (self.total_docs - self.processed_docs) / rate)

    def heartbeat_age(self, now: datetime | None = None) -> float | None:
        if self.heartbeat_at is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.heartbeat_at).total_seconds())

    def is_stalled(self, lease_seconds: float, now: datetime | None = None) -> bool:
        age = self.heartbeat_age(now)
        return self.status == JobStatus.RUNNING and age is not None and age > lease_seconds

    # -- guarded transitions -----------------------------------------------------------------

    def _transition(
        self,
        to: JobStatus,
        *,
        where: Q | None = None,
        raises: type[InvalidTransition] = InvalidTransition,
        **updates: Any,
    ) -> None:
        """Move to `to` with a conditional UPDATE; raise and change nothing when no row matched."""
        allowed = ALLOWED_FROM[to]
        rows = ReindexJob.objects.filter(pk=self.pk, status__in=allowed)
        if where is not None:
            rows = rows.filter(where)
        if rows.update(status=to, updated_at=Now(), **updates) != 1:
            current = ReindexJob.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            raise raises(
                f"job {self.pk} cannot become {to.value}: it is {current or 'gone'}"
                if current not in allowed
                else f"job {self.pk} cannot become {to.value}: its lease or state changed"
            )
        self.refresh_from_db()

    def claim(self, worker: str, *, lease_seconds: float) -> uuid.UUID:
        """Take a pending job, or a running one whose lease expired, for `worker`.

        The heartbeat is the database's `now()`, and expiry is judged by it: never by the clock
        of the worker's host. Raises JobStuck, having failed the job, instead of a reclaim that
        would be the (MAX_RECLAIMS_WITHOUT_PROGRESS + 1)th in a row to find no progress.
        """
        token = uuid.uuid4()
        now = timezone.now()
        reclaiming = self.status == JobStatus.RUNNING
        where = (
            Q(
                status=JobStatus.RUNNING,
                heartbeat_at__lt=lease_cutoff(lease_seconds),
                lease_token=self.lease_token,
            )
            if reclaiming
            else Q(status=JobStatus.PENDING)
        )
        stalled = reclaiming and self.processed_docs == self.processed_at_claim
        without_progress = self.reclaims_without_progress + 1 if stalled else 0
        if reclaiming and without_progress > MAX_RECLAIMS_WITHOUT_PROGRESS:
            self._fail_stuck(where, worker, now)
        previous_worker = self.worker
        reason = (
            f"lease of {previous_worker or 'unknown worker'} expired; "
            f"resuming from {self.processed_docs} processed"
        )
        noted: dict[str, Any] = {"last_error": reason, "last_error_at": Now()} if reclaiming else {}
        with transaction.atomic():
            self._transition(
                JobStatus.RUNNING,
                where=where,
                worker=worker,
                lease_token=token,
                heartbeat_at=Now(),
                started_at=self.started_at or Now(),
                processed_at_claim=self.processed_docs,
                reclaims_without_progress=(
                    without_progress if reclaiming else self.reclaims_without_progress
                ),
                **noted,
            )
            if reclaiming:
                self.log(EventKind.RECLAIMED, worker, reason)
            else:
                self.log(EventKind.CLAIMED, worker)
        return token

    def _fail_stuck(self, where: Q, actor: str, now: datetime) -> None:
        """Fail a stale job whose reclaims keep finding no progress, with its last error."""
        last = (
            f"; last error (at {self.last_error_at.isoformat()}): {self.last_error}"
            if self.last_error and self.last_error_at
            else ""
        )
        error = storable(
            f"stuck: reclaimed {self.reclaims_without_progress} times without progress "
            f"at {self.processed_docs} processed{last}"
        )
        with transaction.atomic():
            self._transition(
                JobStatus.FAILED,
                where=where,
                finished_at=now,
                lease_token=None,
                error=error,
            )
            self.log(EventKind.FAILED, actor, error)
        raise JobStuck(f"job {self.pk}: {error}")

    def note_error(self, token: uuid.UUID, message: str) -> None:
        """Record the last error met while the job goes on; fenced by the lease."""
        now = timezone.now()
        message = storable(message)
        updated = ReindexJob.objects.leased(self.pk, token).update(
            last_error=message, last_error_at=now, updated_at=Now()
        )
        if updated != 1:
            raise LeaseLost(f"job {self.pk}: lease {token} is no longer held")
        self.last_error, self.last_error_at = message, now

    def heartbeat(self, token: uuid.UUID) -> None:
        """Renew the lease at the database's clock; raise LeaseLost if this token no longer
        holds the job."""
        updated = ReindexJob.objects.leased(self.pk, token).update(
            heartbeat_at=Now(), updated_at=Now()
        )
        if updated != 1:
            raise LeaseLost(f"job {self.pk}: lease {token} is no longer held")

    def hand_back(self, token: uuid.UUID, actor: str, reason: str = "worker shutting down") -> None:
        """Return a running job to the queue with its checkpoint (a graceful stop)."""
        with transaction.atomic():
            self._transition(
                JobStatus.PENDING,
                where=Q(lease_token=token, cancel_requested_at__isnull=True),
                raises=LeaseLost,
                worker="",
                lease_token=None,
                heartbeat_at=None,
            )
            self.log(EventKind.HANDED_BACK, actor, reason)
            notify_workers("handed_back", self.pk)

    def _finish(
        self,
        to: JobStatus,
        token: uuid.UUID,
        actor: str,
        event: EventKind,
        detail: Callable[[], str],
        *,
        where: Q | None = None,
        **updates: Any,
    ) -> None:
        """End the job `token` holds, with its event; `detail` reads the final counters."""
        fence = Q(lease_token=token) & (where or Q())
        with transaction.atomic():
            self._transition(
                to,
                where=fence,
                raises=LeaseLost,
                finished_at=Now(),
                lease_token=None,
                **updates,
            )
            self._end_phases(self.finished_at or timezone.now())
            self.log(event, actor, detail())
            # Its collection is free: a job waiting for it may start.
            notify_workers("ended", self.pk)

    def _end_phases(self, now: datetime) -> None:
        """The phase the job ended in ends with it (a failed index build, a cancelled write)."""
        self.phases.filter(finished_at__isnull=True).update(finished_at=now)

    def complete(self, token: uuid.UUID, actor: str) -> None:
        def detail() -> str:
            if self.failed_docs:
                return f"{self.failed_docs} of {self.processed_docs} documents failed"
            return f"{self.processed_docs} documents"

        self._finish(JobStatus.COMPLETED, token, actor, EventKind.COMPLETED, detail)

    def fail(self, token: uuid.UUID, actor: str, error: str) -> None:
        self._finish(
            JobStatus.FAILED,
            token,
            actor,
            EventKind.FAILED,
            lambda: error,
            error=storable(error),
            last_error=storable(error),
            last_error_at=timezone.now(),
        )

    def fail_in_place(self, token: uuid.UUID, actor: str, error: str) -> None:
        """`fail` as one UPDATE of the row, for a database too full for more; then, if it fits,
        the event."""
        now = timezone.now()
        self._transition(
            JobStatus.FAILED,
            where=Q(lease_token=token),
            raises=LeaseLost,
            finished_at=now,
            lease_token=None,
            error=storable(error),
            last_error=storable(error),
            last_error_at=now,
        )
        with contextlib.suppress(DatabaseError):  # the row tells the story without these
            self._end_phases(now)
            self.log(EventKind.FAILED, actor, error)

    def request_cancel(self, actor: str, *, reason: str = "") -> None:
        """Cancel a pending job now, or ask a running one's worker to stop at a batch boundary.

        A sliced job passes the request to its slices: the pending ones are cancelled at once,
        the running ones stop at their next batch boundary, and the job ends with the last.
        """
        with transaction.atomic():
            try:
                self._transition(
                    JobStatus.CANCELLED,
                    where=Q(status=JobStatus.PENDING),
                    finished_at=Now(),
                )
            except InvalidTransition:
                updated = ReindexJob.objects.filter(
                    pk=self.pk, status=JobStatus.RUNNING, cancel_requested_at__isnull=True
                ).update(cancel_requested_at=Now(), updated_at=Now())
                self.refresh_from_db()
                if updated != 1:
                    if self.is_cancelling:
                        raise InvalidTransition(f"job {self.pk} is already cancelling") from None
                    raise InvalidTransition(
                        f"job {self.pk} cannot be cancelled: it is {self.status}"
                    ) from None
                self.log(EventKind.CANCEL_REQUESTED, actor, reason)
                for slice_job in self.slice_jobs.active().order_by("slice_number"):
                    with contextlib.suppress(InvalidTransition):  # it ended meanwhile
                        slice_job.request_cancel(actor, reason=reason)
                self._end_if_no_slice_runs(actor)
                return
            self.log(EventKind.CANCEL_REQUESTED, actor, reason)
            self.log(
                EventKind.CANCELLED,
                actor,
                "cancelled while it waited to resume"
                if self.started_at
                else "cancelled before it started",
            )
            # A resumed sliced job waits as pending with its reopened slices: they end with it,
            # or nothing would ever claim them (a slice runs only while its job does).
            for slice_job in self.slice_jobs.pending().order_by("slice_number"):
                with contextlib.suppress(InvalidTransition):
                    slice_job._transition(
                        JobStatus.CANCELLED, where=Q(status=JobStatus.PENDING), finished_at=Now()
                    )
                    slice_job.log(EventKind.CANCELLED, actor, "cancelled with its sliced job")

    def sliced_end_state(self) -> tuple[JobStatus, str]:
        """How a sliced job whose slices have all ended ends: (status, error). It fails with
        its own error (the first slice's failure, or the budget), or a failed slice's; it is
        cancelled if it was asked to or a slice was; else it completes."""
        if self.error:
            return JobStatus.FAILED, self.error
        failed = self.slice_jobs.filter(status=JobStatus.FAILED).order_by("slice_number").first()
        if failed is not None:
            return JobStatus.FAILED, f"slice {failed.slice_number}: {failed.error}"
        cancelled = self.slice_jobs.filter(status=JobStatus.CANCELLED).exists()
        if self.cancel_requested_at is not None or cancelled:
            return JobStatus.CANCELLED, ""
        return JobStatus.COMPLETED, ""

    def _end_if_no_slice_runs(self, actor: str) -> None:
        """A sliced job asked to stop whose slices have all ended (the pending ones were just
        cancelled) ends now: no worker holds it (its `worker` is blank once split), and no
        slice is left to end it. It fails if a slice failed, else it is cancelled."""
        if not self.is_sliced or self.worker or self.slice_jobs.active().exists():
            return
        if not self.slice_jobs.exists():
            return  # not split yet
        status, error = self.sliced_end_state()
        fails = status == JobStatus.FAILED
        failing: dict[str, Any] = {"error": storable(error)} if fails else {}
        self._transition(
            JobStatus.FAILED if fails else JobStatus.CANCELLED,
            where=Q(status=JobStatus.RUNNING, worker="", cancel_requested_at__isnull=False),
            finished_at=Now(),
            lease_token=None,
            **failing,
        )
        self._end_phases(self.finished_at or timezone.now())
        if fails:
            self.log(EventKind.FAILED, actor, error)
        else:
            ran = self.slice_jobs.filter(started_at__isnull=False).exists()
            self.log(
                EventKind.CANCELLED,
                actor,
                "cancelled after its slices stopped"
                if ran
                else "cancelled before any of its slices ran",
            )
        notify_workers("ended", self.pk)  # its collection is free

    def cancel_orphaned(self, actor: str, *, lease_seconds: float, error: str = "") -> None:
        """End a cancel request that no worker is left to confirm: the job is running, asked to
        cancel, and its lease has expired (for a sliced job: its slices have all ended too).

        With `error` (a sliced job that a slice's failure stopped), the job fails with it
        instead. Raises InvalidTransition if a worker renewed the lease, or the job ended,
        meanwhile.
        """
        requested = self.cancel_requested_at
        to = JobStatus.FAILED if error else JobStatus.CANCELLED
        failed: dict[str, Any] = {"error": storable(error)} if error else {}
        with transaction.atomic():
            self._transition(
                to,
                # On the row itself, not through a subquery: PostgreSQL re-checks a row's own
                # conditions when a heartbeat updated it meanwhile, not a subquery's snapshot.
                where=Q(
                    status=JobStatus.RUNNING,
                    cancel_requested_at__isnull=False,
                    heartbeat_at__lt=lease_cutoff(lease_seconds),
                )
                & ~Q(Exists(ReindexJob.objects.active().filter(parent=OuterRef("pk")))),
                finished_at=Now(),
                lease_token=None,
                **failed,
            )
            self._end_phases(self.finished_at or timezone.now())
            since = self.heartbeat_at.isoformat() if self.heartbeat_at else "?"
            asked = f" (requested at {requested.isoformat()})" if requested else ""
            holder = f"worker {self.worker}" if self.worker else "no worker"
            why = (
                f"the stop{asked} was never confirmed, and the lease of {holder} expired "
                f"(last heartbeat {since}, lease {lease_seconds:g}s)"
            )
            if error:
                self.log(EventKind.FAILED, actor, f"failed without a worker: {error}; {why}")
            else:
                self.log(EventKind.CANCELLED, actor, f"cancelled without a worker: {why}")

    def force_cancel(self, actor: str, *, lease_seconds: float) -> None:
        """Cancel a running job whose worker stopped renewing its lease, without the worker.

        Should that worker come back, its fenced writes raise LeaseLost: the token is cleared.
        """
        now = timezone.now()
        try:
            with transaction.atomic():
                self._transition(
                    JobStatus.CANCELLED,
                    where=Q(status=JobStatus.RUNNING, heartbeat_at__lt=lease_cutoff(lease_seconds)),
                    finished_at=Now(),
                    lease_token=None,
                )
                self._end_phases(self.finished_at or now)
                # The row as the UPDATE left it: the worker and its last beat are unchanged.
                since = self.heartbeat_at.isoformat() if self.heartbeat_at else "?"
                self.log(
                    EventKind.CANCELLED,
                    actor,
                    f"force-cancelled: worker {self.worker or 'unknown'} not responding since "
                    f"{since}",
                )
        except InvalidTransition:
            self.refresh_from_db()
            if self.status != JobStatus.RUNNING:
                raise InvalidTransition(
                    f"job {self.pk} cannot be force-cancelled: it is {self.status}; only a running"
                    " job whose lease expired can be"
                ) from None
            age = self.heartbeat_age(now)
            raise InvalidTransition(
                f"job {self.pk} cannot be force-cancelled: its worker {self.worker} renewed its "
                f"lease {age or 0:.0f}s ago (lease {lease_seconds:g}s) and still responds"
            ) from None

    def confirm_cancel(self, token: uuid.UUID, actor: str) -> None:
        """The worker's acknowledgement of a cancel request, at a batch boundary."""
        self._finish(
            JobStatus.CANCELLED,
            token,
            actor,
            EventKind.CANCELLED,
            lambda: f"stopped after {self.processed_docs} documents",
            where=Q(cancel_requested_at__isnull=False),
        )

    def await_approval(self, token: uuid.UUID, actor: str, detail: str) -> None:
        """A swap job whose verification passed (--approve manual) stops holding its lease and
        waits for an operator's Swap or Discard; `detail` summarises the verification."""
        with transaction.atomic():
            self._transition(
                JobStatus.AWAITING_APPROVAL,
                where=Q(lease_token=token, cancel_requested_at__isnull=True),
                raises=LeaseLost,
                worker="",
                lease_token=None,
            )
            self.log(EventKind.AWAITING_APPROVAL, actor, detail)
            notify_workers("ended", self.pk)  # its alias is free for the next swap job

    def end_awaiting(self, to: JobStatus, actor: str, event: EventKind, detail: str) -> None:
        """End a job awaiting approval: completed once swapped, cancelled once discarded.
        Raises InvalidTransition unless it is still awaiting."""
        if to not in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            raise ValueError(f"a job awaiting approval cannot become {to}")
        with transaction.atomic():
            self._transition(to, where=Q(status=JobStatus.AWAITING_APPROVAL), finished_at=Now())
            self._end_phases(self.finished_at or timezone.now())
            self.log(event, actor, detail)
            notify_workers("ended", self.pk)

    def reopen_slice(self, actor: str) -> None:
        """Queue again a slice that failed or was stopped with its job, from its checkpoint, as
        its sliced job resumes."""
        with transaction.atomic():
            self._transition(
                JobStatus.PENDING,
                where=Q(parent__isnull=False, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]),
                **REQUEUED,
            )
            self.log(
                EventKind.RESUMED,
                actor,
                f"slice {self.slice_number} resuming from {self.processed_docs} processed",
            )

    def resume(self, actor: str) -> None:
        """Queue a failed job again from its checkpoint, with its counters (after an outage)."""
        error = self.error
        try:
            with transaction.atomic():
                self._transition(JobStatus.PENDING, where=Q(status=JobStatus.FAILED), **REQUEUED)
                self.log(
                    EventKind.RESUMED,
                    actor,
                    f"resuming from {self.processed_docs} processed"
                    + (f"; it had failed: {error}" if error else ""),
                )
                # A sliced job resumes its unfinished slices, each from its own checkpoint.
                for slice_job in self.slice_jobs.filter(
                    status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
                ):
                    slice_job.reopen_slice(actor)
        except InvalidTransition:
            raise InvalidTransition(
                f"job {self.pk} cannot be resumed: it is {self.status}; only a failed job can be"
            ) from None

    def log(self, kind: EventKind, actor: str, detail: str = "") -> JobEvent:
        return JobEvent.objects.create(
            job=self, kind=kind, actor=storable(actor), detail=storable(detail)
        )


class BatchFailureQuerySet(models.QuerySet["BatchFailure"]):
    def unresolved(self) -> BatchFailureQuerySet:
        """Failures whose documents no later retry has written."""
        return self.filter(resolved_at__isnull=True)


class BatchFailure(models.Model):
    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="failures")
    batch_number = models.PositiveIntegerField()
    doc_ids = models.JSONField(default=list)
    error_type = models.CharField(max_length=200)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    transient = models.BooleanField(default=False)
    # Where the failing document is in its source ("line 17", a file's path), and the start of
    # its text, so that an operator can see what failed without opening the source.
    locator = models.CharField(max_length=1000, blank=True)
    preview = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[BatchFailureQuerySet] = BatchFailureQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["batch_number", "id"]
        indexes = [
            models.Index(fields=["job", "batch_number"], name="batchfailure_job_batch"),
            models.Index(fields=["job", "error_type"], name="batchfailure_job_type"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} batch {self.batch_number}: {self.error_type}"


class JobEvent(models.Model):
    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(
        max_length=max(len(v) for v in EventKind.values), choices=EventKind.choices
    )
    actor = models.CharField(max_length=200)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["job", "at"], name="jobevent_job_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} by {self.actor}"


class JobSample(models.Model):
    """A point of a job's progress over time, for its rate chart; thinned as the job grows."""

    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    processed = models.PositiveBigIntegerField()
    failed = models.PositiveBigIntegerField()
    retries = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["job", "at"], name="jobsample_job_at")]

    def __str__(self) -> str:
        return f"job {self.job_id} at {self.at.isoformat()}: {self.processed} processed"


class WorkerProcess(models.Model):
    """A worker that has run recently: registered at start, renewed with its heartbeat."""

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    current_job = models.ForeignKey(
        ReindexJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    jobs_done = models.PositiveIntegerField(default=0)
    # Its batches by duration since it started ({"buckets": [...], "sum": s}), written with its
    # heartbeats, for the web process's reindexer_batch_seconds (reindexer.metrics.tally).
    batch_seconds = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-heartbeat_at", "name"]
        indexes = [models.Index(fields=["heartbeat_at"], name="workerprocess_heartbeat")]

    def __str__(self) -> str:
        return self.name


class JobPhase(models.Model):
    """One phase of a job: when it started and ended, and how far it got (`done` of `total`).

    One row per (job, phase): a job resumed after a crash carries on the same row.
    """

    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="phases")
    name = models.CharField(max_length=max(len(v) for v in Phase.values), choices=Phase.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    done = models.PositiveBigIntegerField(null=True, blank=True)
    total = models.PositiveBigIntegerField(null=True, blank=True)
    # What the phase is doing now, for an operator ("building HNSW: loading tuples").
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="jobphase_one_per_job"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.name}"

    @property
    def progress(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, (self.done or 0) / self.total)

    def duration_seconds(self, now: datetime | None = None) -> float:
        end = self.finished_at or now or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())


class ContentHash(models.Model):
    """What was last written for one document of one collection: the hash of its content (text
    and metadata, with the embedder's identity and dimensions) and when, for --mode incremental.

    Recorded only in the commit of the checkpoint that follows a successful store write, so a
    failed or retried write never marks a document done. `store` is the store's backend spec
    without fault-injecting wrappers: the collection it names is the same whoever wraps it.
    """

    store = models.CharField(max_length=specs.STORE_MAX)
    collection = models.CharField(max_length=specs.COLLECTION_MAX)
    doc_id = models.TextField()
    digest = models.CharField(max_length=64)
    written_at = models.DateTimeField()
    # The last (top-level) job whose source held the document: what --cleanup full keeps.
    seen_by = models.ForeignKey(
        ReindexJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["store", "collection", "doc_id"], name="contenthash_one_per_document"
            ),
        ]
        indexes = [
            models.Index(fields=["store", "collection", "seen_by"], name="contenthash_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.store}/{self.collection}/{self.doc_id}: {self.digest[:12]}"


def _url_origin(url: str) -> str:
    """scheme://host[:port] of a webhook's URL, as it is shown."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookFormat(models.TextChoices):
    JSON = "json", "JSON (the job's status --json fields)"
    SLACK = "slack", "Slack (incoming webhook)"


class AlertEvent(models.TextChoices):
    """The job events a webhook can subscribe to."""

    COMPLETED = "completed", "Completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
    FAILED = "failed", "Failed"
    STALLED = "stalled", "Stalled"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"


class Webhook(models.Model):
    """A URL that receives job events, as edited in the admin (REINDEXER_WEBHOOK_URLS adds more
    from the settings)."""

    url = models.URLField(max_length=2000)
    format = models.CharField(max_length=10, choices=WebhookFormat.choices, default="json")
    # The AlertEvent values it receives; empty for all of them.
    events = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        # Never the whole URL: its path or query may hold the webhook's token.
        return self.description or _url_origin(self.url)


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Every attempt failed; retried no more."""


class WebhookDelivery(models.Model):
    """One event of one job sent to one URL, retried with backoff until it is delivered or its
    attempts run out. A delivery never touches its job's status or counters."""

    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(
        Webhook, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    url = models.URLField(max_length=2000)
    format = models.CharField(max_length=10, choices=WebhookFormat.choices, default="json")
    event = models.CharField(max_length=30, choices=AlertEvent.choices)
    # What makes this occurrence of the event unique (the JobEvent it follows, or the heartbeat
    # a stall was seen at), so an event noticed twice is sent once and a job that fails again
    # after a resume is reported again.
    key = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "key", "url"], name="webhookdelivery_once_per_event"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhookdelivery_due",
                condition=Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.event} to {_url_origin(self.url)}: {self.state}"


class AliasMoveKind(models.TextChoices):
    SWAP = "swap", "Swap"
    ROLLBACK = "rollback", "Rollback"


class AliasMove(models.Model):
    """One move of an alias to a physical collection (a swap job's cutover, or a rollback), in
    order: the history that rollback walks back and the aliases page shows."""

    # The store's backend spec without fault-injecting wrappers, as ContentHash keeps it.
    store = models.CharField(max_length=specs.STORE_MAX)
    alias = models.CharField(max_length=specs.COLLECTION_MAX)
    collection = models.CharField(max_length=specs.COLLECTION_MAX)
    # What the alias served before the move; "" when it was new.
    previous = models.CharField(max_length=specs.COLLECTION_MAX, blank=True)
    kind = models.CharField(max_length=10, choices=AliasMoveKind.choices)
    # The swap job that built `collection` (for a rollback: the job that built its target).
    job = models.ForeignKey(
        ReindexJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="alias_moves"
    )
    actor = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["store", "alias", "-at"], name="aliasmove_history")]

    def __str__(self) -> str:
        return f"{self.alias} → {self.collection} ({self.kind})"
