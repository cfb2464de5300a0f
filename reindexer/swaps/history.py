"""An alias's history of moves (AliasMove), newest first, and what a rollback would go back to.

Rollback goes to what the alias served before the swap that brought its current collection in,
so rolling back twice walks two swaps back (not to and fro); a rollback's own move is history
for the aliases page, never a step to undo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from reindexer.models import AliasMove, AliasMoveKind


def moves_of(store: str, alias: str) -> QuerySet[AliasMove]:
    """The moves of `alias` in the store `store` (its AliasMove key), newest first."""
    return (
        AliasMove.objects.filter(store=store, alias=alias)
        .select_related("job")
        .order_by("-at", "-id")
    )


def swap_into(moves: Iterable[AliasMove], collection: str) -> AliasMove | None:
    """The newest swap that moved the alias to `collection` (`moves` newest first)."""
    return next(
        (m for m in moves if m.kind == AliasMoveKind.SWAP and m.collection == collection), None
    )


@dataclass(frozen=True)
class Earlier:
    """Where a rollback would take the alias, or why it cannot."""

    target: str | None
    swap: AliasMove | None
    why_not: str = ""


def earlier(
    alias: str, serves: str | None, moves: Sequence[AliasMove], existing: Iterable[str]
) -> Earlier:
    """What `alias` served before the swap that brought `serves` in, if it still exists."""
    if serves is None:
        return Earlier(None, None, f"{alias!r} is not an alias: nothing to roll back")
    swapped = swap_into(moves, serves)
    if swapped is None:
        return Earlier(
            None,
            None,
            f"alias {alias!r} serves {serves}, which no recorded swap brought in: nothing to"
            " roll back to",
        )
    if not swapped.previous:
        return Earlier(
            None,
            swapped,
            f"alias {alias!r} serves {serves}, the first collection it ever served: there is"
            " nothing earlier to roll back to",
        )
    if swapped.previous not in set(existing):
        return Earlier(
            None,
            swapped,
            f"alias {alias!r} served {swapped.previous} before {serves}, but it is gone"
            " (pruned or dropped): nothing to roll back to",
        )
    return Earlier(swapped.previous, swapped)
