"""A running job's phases (counting, writing, indexing...): the current one on the job, and one
JobPhase row per phase with its start, end and progress, for the step tree and `phase`."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from reindexer.models import EventKind, JobPhase, LeaseLost, Phase, ReindexJob

# Every job counts and writes, and its claim and end are events already: only the phases that
# follow the writing (indexing, verifying, swapping) join the timeline.
_IN_TIMELINE = frozenset({Phase.INDEXING, Phase.VERIFYING, Phase.SWAPPING})


class PhaseTracker:
    """Moves the job `token` holds from phase to phase; every move is fenced by the lease."""

    def __init__(self, job: ReindexJob, token: uuid.UUID, actor: str) -> None:
        self.job = job
        self.token = token
        self.actor = actor

    def _fence(self, **updates: object) -> None:
        """Update the job row only while `token` holds it: a worker that lost the job writes no
        phase of the worker that has it now. Raises LeaseLost."""
        updated = ReindexJob.objects.leased(self.job.pk, self.token).update(**updates)
        if updated != 1:
            raise LeaseLost(f"job {self.job.pk}: lease {self.token} is no longer held")

    def enter(self, name: Phase, *, total: int | None = None, detail: str = "") -> None:
        """Make `name` the current phase and end the one before; a resumed job carries on the
        row of a phase it had begun."""
        job = self.job
        now = timezone.now()
        with transaction.atomic():
            self._fence(phase=name, updated_at=Now())
            JobPhase.objects.filter(job=job, finished_at__isnull=True).exclude(name=name).update(
                finished_at=now
            )
            row, created = JobPhase.objects.get_or_create(
                job=job, name=name, defaults={"started_at": now, "total": total, "detail": detail}
            )
            if not created:
                JobPhase.objects.filter(pk=row.pk).update(
                    finished_at=None, total=total, detail=detail
                )
            if name in _IN_TIMELINE:
                job.log(
                    EventKind.PHASE, self.actor, f"{name} {'started' if created else 'resumed'}"
                )
        job.phase = name

    def report(self, name: Phase, *, done: int | None, total: int | None, detail: str = "") -> None:
        """The progress of phase `name` so far (a store's index build, say)."""
        with transaction.atomic():
            # The relay (no Redis) follows jobs by updated_at: touching it shows the progress.
            self._fence(updated_at=Now())
            JobPhase.objects.filter(job=self.job, name=name).update(
                done=done, total=total, detail=detail[:300]
            )

    def finish(self, name: Phase, detail: str) -> None:
        """End phase `name`, with a word on how it went, also logged as an event."""
        now = timezone.now()
        with transaction.atomic():
            self._fence(updated_at=Now())
            JobPhase.objects.filter(job=self.job, name=name).update(
                finished_at=now, detail=detail[:300]
            )
            if name in _IN_TIMELINE:
                self.job.log(EventKind.PHASE, self.actor, f"{name} done: {detail}")
