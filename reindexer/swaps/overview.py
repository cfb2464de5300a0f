"""Every alias that a swap made, as the aliases page and `GET /api/aliases/` show it: what it
serves, its physical collections, its moves (with the jobs that built them) and whether it can
be rolled back. A store that cannot be reached shows its error; nothing here raises for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reindexer.models import AliasMove
from reindexer.stores import store_backend
from reindexer.swaps.history import earlier, moves_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AliasView:
    store: str
    alias: str
    serves: str | None
    collections: list[str]
    moves: list[AliasMove]  # newest first, each with its job
    error: str = ""

    @property
    def can_rollback(self) -> bool:
        """Whether `rollback` would find an earlier collection that still exists."""
        if self.error:
            return False
        return earlier(self.alias, self.serves, self.moves, self.collections).target is not None

    @property
    def rollback_target(self) -> str | None:
        if self.error:
            return None
        return earlier(self.alias, self.serves, self.moves, self.collections).target


def alias_view(store: str, alias: str) -> AliasView:
    """One alias (`store` as AliasMove records it), read from its store now."""
    moves = list(moves_of(store, alias))
    try:
        backend = store_backend(store)
        serves = backend.alias_target(alias)
        collections = backend.physical_collections(alias)
    except Exception as exc:  # noqa: BLE001 - the page shows any store error, and goes on
        logger.warning("alias %s in %s: cannot read the store: %s", alias, store, exc)
        return AliasView(store, alias, None, [], moves, error=f"{type(exc).__name__}: {exc}")
    return AliasView(store, alias, serves, collections, moves)


def aliases() -> list[AliasView]:
    """One view per (store, alias) in the move history, by store then alias."""
    pairs = AliasMove.objects.order_by("store", "alias").values_list("store", "alias").distinct()
    return [alias_view(store, alias) for store, alias in pairs]
