"""What operators do to swaps: approve or discard a job awaiting approval, roll an alias back,
prune its old collections. The command line, the API and the pages call these; permissions are
theirs to check."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from reindexer.errors import SpecError
from reindexer.jobs import actor_name
from reindexer.models import (
    AliasMove,
    AliasMoveKind,
    EventKind,
    InvalidTransition,
    JobMode,
    JobStatus,
    ReindexJob,
)
from reindexer.progress import announce
from reindexer.stores import store_backend
from reindexer.stores.aliases import SEPARATOR
from reindexer.swaps import cutover
from reindexer.swaps.history import earlier, moves_of
from reindexer.swaps.names import build_collection, store_key

logger = logging.getLogger(__name__)

# A swap job in these states still needs its collection: prune leaves it alone.
UNDER_WAY = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.AWAITING_APPROVAL)


class NothingToRollBack(InvalidTransition):
    """The alias serves the first collection it ever served, or the one before is gone."""


def _awaiting(job: ReindexJob, what: str) -> ReindexJob:
    job.refresh_from_db()
    if job.status != JobStatus.AWAITING_APPROVAL:
        raise InvalidTransition(
            f"job {job.pk} cannot be {what}: it is {job.status}; only a swap job awaiting"
            " approval can be"
        )
    return job


def approve_swap(
    job: ReindexJob, *, user: AbstractBaseUser | None = None, actor: str | None = None
) -> ReindexJob:
    """Swap: move the alias to the collection the job built and verified, and complete it.

    Refused (InvalidTransition) unless the job awaits approval, and when the alias has moved
    since its verification (the count was checked against what it served then). A store error
    (BackendFailed) leaves the job awaiting, and is raised."""
    job = _awaiting(job, "swapped")
    who = actor or actor_name(user)
    cutover.swap(job, who)  # AliasMoved (an InvalidTransition) if the alias moved meanwhile
    announce(job.pk)
    job.refresh_from_db()
    return job


def discard_swap(
    job: ReindexJob, *, user: AbstractBaseUser | None = None, actor: str | None = None
) -> ReindexJob:
    """Discard: cancel a job awaiting approval and drop the collection it built; the alias is
    left as it was. InvalidTransition unless the job awaits approval."""
    job = _awaiting(job, "discarded")
    who = actor or actor_name(user)
    job.end_awaiting(
        JobStatus.CANCELLED, who, EventKind.CANCELLED, f"discarded by {who} before its swap"
    )
    cutover.drop_built(job, who, f"discarded by {who}")
    announce(job.pk)
    return job


def rollback(
    store: str, alias: str, *, user: AbstractBaseUser | None = None, actor: str | None = None
) -> AliasMove:
    """Move `alias` back to what it served before the swap that brought its current collection
    in. NothingToRollBack when there is nothing earlier (or it is gone); SpecError for a bad
    store spec."""
    backend = store_backend(store)
    backend.check_collection(alias)
    key = store_key(store)
    who = actor or actor_name(user)
    moves = list(moves_of(key, alias))
    current = backend.alias_target(alias)
    back = earlier(alias, current, moves, backend.physical_collections(alias))
    if back.target is None:
        raise NothingToRollBack(back.why_not)
    built = next(
        (m.job for m in moves if m.kind == AliasMoveKind.SWAP and m.collection == back.target),
        None,
    )
    with transaction.atomic():
        previous = backend.point_alias(alias, back.target)
        move = AliasMove.objects.create(
            store=key,
            alias=alias,
            collection=back.target,
            previous=previous or "",
            kind=AliasMoveKind.ROLLBACK,
            job=built,
            actor=who,
        )
    logger.info("%s rolled alias %s back to %s (was %s)", who, alias, back.target, previous)
    return move


def _job_of(alias: str, name: str) -> ReindexJob | None:
    suffix = name[len(alias) + len(SEPARATOR) :]
    return ReindexJob.objects.filter(pk=int(suffix)).first() if suffix.isdigit() else None


# The most physical collections `prune --keep` may keep: past it, a typo rather than a choice.
MAX_KEEP = 1000


def prune(
    store: str,
    alias: str,
    keep: int,
    *,
    user: AbstractBaseUser | None = None,
    actor: str | None = None,
) -> list[str]:
    """Drop `alias`'s physical collections but its newest `keep` and the one it serves (and
    those of swap jobs still under way); the names dropped, oldest first. ValueError for a
    `keep` outside 0 to MAX_KEEP, SpecError for a bad store spec."""
    if not 0 <= keep <= MAX_KEEP:
        raise ValueError(f"keep must be from 0 to {MAX_KEEP}, got {keep}")
    backend = store_backend(store)
    backend.check_collection(alias)
    who = actor or actor_name(user)
    served = backend.alias_target(alias)
    building = _under_way(store, alias)
    candidates = [c for c in backend.physical_collections(alias) if c not in building]
    kept = set(candidates[len(candidates) - keep :] if keep else []) | {served}
    dropped = []
    for name in candidates:
        if name in kept:
            continue
        if backend.drop_collection(name):  # refuses an alias and a served collection
            dropped.append(name)
            job = _job_of(alias, name)
            if job is not None:
                job.log(EventKind.DISCARDED, who, f"pruned its collection {name}")
    logger.info("%s pruned alias %s: dropped %s", who, alias, dropped or "nothing")
    return dropped


def _under_way(store: str, alias: str) -> set[str]:
    """The collections that jobs in `store` (wrapped or not) still write among `alias`'s: the
    swap jobs building one, and the jobs writing one by name (a retry of a completed swap)."""
    key = store_key(store)
    names = set()
    building = Q(mode=JobMode.SWAP, collection=alias) | Q(
        collection__startswith=f"{alias}{SEPARATOR}"
    )
    for job in ReindexJob.objects.filter(building, status__in=UNDER_WAY):
        try:
            if store_key(job.store) == key:
                names.add(build_collection(job))
        except SpecError:  # a store no longer known here writes none of these
            continue
    return names
