"""Moving an alias to the collection a swap job built, and dropping the one a failed, cancelled
or discarded swap job leaves behind (never the alias, never what it serves)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from reindexer.models import (
    AliasMove,
    AliasMoveKind,
    EventKind,
    InvalidTransition,
    JobMode,
    JobPhase,
    JobStatus,
    LeaseLost,
    Phase,
    ReindexJob,
)
from reindexer.stores import store_backend
from reindexer.swaps.names import build_collection, serving, store_key

logger = logging.getLogger(__name__)


def record_verification(job: ReindexJob, token: uuid.UUID, verification: dict[str, Any]) -> None:
    """Store the gate's results on the job, fenced by the lease; raises LeaseLost."""
    updated = ReindexJob.objects.leased(job.pk, token).update(
        verification=verification, updated_at=Now()
    )
    if updated != 1:
        raise LeaseLost(f"job {job.pk}: lease {token} is no longer held")
    job.verification = verification


def moved_detail(alias: str, collection: str, previous: str | None) -> str:
    was = f"was {previous}" if previous else "a new alias"
    return f"alias {alias} now serves {collection} ({was})"


class AliasMoved(InvalidTransition):
    """The alias serves another collection than when the job was verified (another swap or a
    rollback came first): the gate's count no longer applies, so the alias is not moved."""


def _check_unmoved(job: ReindexJob, now: str | None, built: str) -> None:
    verified = job.verification.get("previous")
    # `built`: the move was made already (a retried commit), and is made again harmlessly.
    if now not in (verified, built):
        raise AliasMoved(
            f"job {job.pk} cannot be swapped: alias {job.collection} serves {now} now, not"
            f" {verified or 'nothing'} as when the job was verified; start a new swap"
        )


def swap(job: ReindexJob, actor: str, *, token: uuid.UUID | None = None) -> AliasMove:
    """Point the job's alias at the collection it built, record the move, and complete the job:
    the running job `token` holds (--approve auto), or, without a token, a job awaiting
    approval (InvalidTransition if it is not). A store error (BackendFailed) changes nothing."""
    backend = store_backend(job.store)
    collection = build_collection(job)
    with transaction.atomic():
        # The row is ours (and locked: SQLite's IMMEDIATE transaction, PostgreSQL's row lock)
        # before the alias moves, so nobody can end the job between the move and its record.
        if token is not None:
            job.heartbeat(token)
        elif not (
            ReindexJob.objects.select_for_update()
            .filter(pk=job.pk, status=JobStatus.AWAITING_APPROVAL)
            .exists()
        ):
            raise InvalidTransition(f"job {job.pk} is no longer awaiting approval")
        # Checked with the row held, so no other Swap of this job can slip in between; the
        # gate compared the count with what the alias served then.
        _check_unmoved(job, serving(backend, job.collection), collection)
        previous = backend.point_alias(job.collection, collection)
        move = AliasMove.objects.create(
            store=store_key(job.store),
            alias=job.collection,
            collection=collection,
            previous=previous or "",
            kind=AliasMoveKind.SWAP,
            job=job,
            actor=actor,
        )
        job.log(EventKind.SWAPPED, actor, moved_detail(job.collection, collection, previous))
        if token is not None:
            job.complete(token, actor)
        else:
            _swapping_phase(job, f"approved by {actor}")
            job.end_awaiting(JobStatus.COMPLETED, actor, EventKind.COMPLETED, f"swapped by {actor}")
    return move


def _swapping_phase(job: ReindexJob, detail: str) -> None:
    """An approved swap's last phase, in the step tree and `phase` as an automatic one's: the
    operator's Swap is the swapping, done in the same transaction."""
    now = timezone.now()
    JobPhase.objects.update_or_create(
        job=job, name=Phase.SWAPPING, defaults={"started_at": now, "detail": detail}
    )
    ReindexJob.objects.filter(pk=job.pk).update(phase=Phase.SWAPPING, updated_at=Now())
    job.phase = Phase.SWAPPING


def drop_built(job: ReindexJob, actor: str, why: str) -> bool:
    """Drop the collection a swap job built (failed, cancelled, discarded), logging it; whether
    it went. Never raises: the store's own refusal guards the alias and what it serves, and a
    store that cannot drop it now leaves it to `reindex prune`."""
    if job.mode != JobMode.SWAP:
        return False
    try:
        name = build_collection(job)
        dropped = store_backend(job.store).drop_collection(name)
    except Exception as exc:  # noqa: BLE001 - any store error is only logged
        logger.warning("job %s: could not drop its collection: %s", job.pk, exc)
        job.log(
            EventKind.DISCARDED,
            actor,
            f"could not drop its collection ({why}): {exc}; `reindex prune {job.collection}`"
            " drops it later",
        )
        return False
    if dropped:
        logger.info("job %s: dropped its collection %s (%s)", job.pk, name, why)
        job.log(
            EventKind.DISCARDED,
            actor,
            f"dropped its collection {name} ({why}); alias {job.collection} left as it was",
        )
    return dropped
