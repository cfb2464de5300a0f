"""Readers during a move: on every store, reader threads query through an alias in a tight loop
(search and count) while the alias is moved back and forth between two full collections many
times, starting from a plain collection that the first move adopts as `ALIAS__base`.

No query may fail, none may see an empty result, and none a mixed one: the two collections'
ids are told apart by their prefix (`a-`, `b-`) and their counts differ. One reader keeps a
store opened on the alias (a search service); the other opens it afresh for every query, as
`reindex search` does.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reindexer.documents import Document
from reindexer.stores import StoreBackend, VectorStore, store_backend
from tests.stores.harnesses import DIMS, vectors_of
from tests.unit.test_store_aliases import configure

A_DOCS, B_DOCS = 60, 45
READER_DEADLINE_SECONDS = 120.0

SPECS = [
    pytest.param("sqlite-vec", 60, id="sqlite-vec"),
    pytest.param("pgvector", 40, id="pgvector", marks=pytest.mark.backends),
    pytest.param("milvus", 30, id="milvus", marks=pytest.mark.backends),
]


@dataclasses.dataclass
class Seen:
    """What one reader saw: queries by outcome, and the first few problems in full."""

    queries: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[str] = dataclasses.field(default_factory=list)

    def bad(self, what: str) -> None:
        self.queries["bad"] += 1
        if len(self.problems) < 10:
            self.problems.append(what)


def fill(backend: StoreBackend, name: str, prefix: str, n: int) -> None:
    store = backend.open(name, DIMS)
    try:
        docs = [Document(f"{prefix}-{i:03d}", f"{prefix} doc {i}", {"n": i}) for i in range(n)]
        store.upsert(docs, vectors_of(docs))
    finally:
        store.close()


def check(store: VectorStore, rng: np.random.Generator, seen: Seen) -> None:
    """One search and one count, judged."""
    hits = store.search(rng.normal(size=DIMS).astype(np.float32), k=10)
    prefixes = {hit.id.split("-", 1)[0] for hit in hits}
    if len(hits) != 10 or len(prefixes) != 1:
        seen.bad(f"search: {len(hits)} hits from {sorted(prefixes)}")
    else:
        seen.queries[f"search {prefixes.pop()}"] += 1
    count = store.count()
    if count not in (A_DOCS, B_DOCS):
        seen.bad(f"count {count}")
    else:
        seen.queries[f"count {count}"] += 1


def read_loop(
    query: Callable[[np.random.Generator, Seen], None], stop: threading.Event, seen: Seen
) -> None:
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    while not stop.is_set():
        try:
            query(rng, seen)
        except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
            seen.bad(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize(("spec", "moves"), SPECS)
def test_readers__never_fail_nor_see_an_empty_or_mixed_result_while_the_alias_moves(
    spec: str,
    moves: int,
    data_dir: Path,
    settings: Any,
    request: pytest.FixtureRequest,
) -> None:
    configure(settings, spec, request)
    backend = store_backend(spec)
    alias = f"rd_{uuid.uuid4().hex[:10]}"
    fill(backend, alias, "a", A_DOCS)  # a plain collection, as before any swap
    fill(backend, f"{alias}__2", "b", B_DOCS)

    kept_open = backend.open(alias, DIMS)  # opened while `alias` is still a plain collection
    following: list[VectorStore] = []

    def through_kept(rng: np.random.Generator, seen: Seen) -> None:
        check(kept_open, rng, seen)

    def through_follower(rng: np.random.Generator, seen: Seen) -> None:
        if not following:
            if backend.alias_target(alias) is None:
                return  # not an alias yet: the fresh reader covers the plain collection
            following.append(backend.open(alias, DIMS))
        check(following[0], rng, seen)

    def through_fresh(rng: np.random.Generator, seen: Seen) -> None:
        store = backend.open(alias, DIMS)
        try:
            check(store, rng, seen)
        finally:
            store.close()

    stop = threading.Event()
    readers = {"kept": through_kept, "following": through_follower, "fresh": through_fresh}
    seen = {name: Seen() for name in readers}
    threads = [
        threading.Thread(target=read_loop, args=(query, stop, seen[name]), daemon=True)
        for name, query in readers.items()
    ]
    for thread in threads:
        thread.start()
    try:
        assert backend.point_alias(alias, f"{alias}__2") == f"{alias}__base"
        for move in range(moves):
            target = f"{alias}__base" if move % 2 == 0 else f"{alias}__2"
            stop.wait(0.005)  # let each reader in between moves
            backend.point_alias(alias, target)
    finally:
        stop.set()
        for thread in threads:
            thread.join(READER_DEADLINE_SECONDS)
        kept_open.close()
        for store in following:
            store.close()

    for name, what in seen.items():
        assert what.queries["bad"] == 0, (name, what.problems, what.queries)
    # Every reader kept querying, and the ones that follow the alias saw both collections.
    for name in ("following", "fresh"):
        assert seen[name].queries["search a"] > 0, (name, seen[name].queries)
        assert seen[name].queries["search b"] > 0, (name, seen[name].queries)
    assert sum(seen["kept"].queries.values()) > 0
