"""`flaky(INNER,...)`: a real store wrapped to fail on a schedule, for tests, demos and drills."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import PermanentError, SpecError, TransientError
from reindexer.stores.base import StoreBackend, VectorStore
from reindexer.stores.delegating import DelegatingBackend, DelegatingStore


@dataclass(frozen=True)
class FlakyOptions:
    """`flaky(INNER,transient=R,permanent=R,poison=ID,...,latency=MS,seed=N)`.

    A value runs to the next `,` or the closing `)`, so poisoned ids may hold `<`, `=`, `/`...
    """

    inner: str
    transient: float = 0.0
    permanent: float = 0.0
    poison: frozenset[str] = field(default_factory=frozenset)
    latency_ms: float = 0.0
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        inner, *rest = spec.items or ("",)
        if not inner or "=" in inner:
            raise SpecError(f"flaky store {spec.text!r} must name its inner store first")
        transient = permanent = latency = 0.0
        seed = 0
        poison: set[str] = set()
        for key, value in spec.pairs(tuple(rest)):
            if key == "transient":
                transient = _rate(key, value)
            elif key == "permanent":
                permanent = _rate(key, value)
            elif key == "poison":
                if not value:
                    raise SpecError("flaky: poison needs a document id")
                poison.add(value)
            elif key == "latency":
                latency = _latency(value)
            elif key == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    raise SpecError(f"flaky: seed={value!r} is not an integer") from None
            else:
                raise SpecError(
                    f"flaky: unknown option {key!r} "
                    "(known: transient, permanent, poison, latency, seed)"
                )
        return cls(inner, transient, permanent, frozenset(poison), latency, seed)


def _rate(key: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise SpecError(f"flaky: {key}={value!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise SpecError(f"flaky: {key} must be between 0 and 1, got {value}")
    return rate


def _latency(value: str) -> float:
    try:
        latency = float(value)
    except ValueError:
        raise SpecError(f"flaky: latency={value!r} is not a number") from None
    if not 0 <= latency <= 60_000:
        raise SpecError("flaky: latency must be between 0 and 60000 ms")
    return latency


def parse_flaky(spec: str) -> FlakyOptions:
    """The options of a `flaky(...)` store spec; raises SpecError."""
    from reindexer.stores import STORES  # the registry imports this module

    options = STORES.resolve(spec).options
    if not isinstance(options, FlakyOptions):
        raise SpecError(f"store {spec!r} is not a flaky(...) store")
    return options


class FlakyBackend(DelegatingBackend):
    """The inner store's backend, whose stores raise on the configured schedule.

    Aliases pass through unharmed: the faults are the writes' (and a swap's build is writes).
    """

    def __init__(self, inner: StoreBackend, options: FlakyOptions) -> None:
        super().__init__(inner)
        self.options = options

    def open(self, collection: str, dimensions: int) -> FlakyStore:
        return FlakyStore(self.inner.open(collection, dimensions), self.options)

    def open_existing(self, collection: str) -> FlakyStore | None:
        store = self.inner.open_existing(collection)
        return None if store is None else FlakyStore(store, self.options)


class FlakyStore(DelegatingStore):
    """Delegates to `inner`, raising TransientError or PermanentError on the configured schedule."""

    def __init__(self, inner: VectorStore, options: FlakyOptions) -> None:
        super().__init__(inner)
        self.options = options
        self._random = random.Random(options.seed)  # noqa: S311 - fault injection, not crypto

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        if self.options.latency_ms:
            time.sleep(self.options.latency_ms / 1000)
        poisoned = [doc.id for doc in docs if doc.id in self.options.poison]
        if poisoned:
            raise PermanentError(f"poisoned document {poisoned[0]!r} rejected by the store")
        if self._random.random() < self.options.transient:
            raise TransientError("simulated store timeout (flaky transient)")
        if self._random.random() < self.options.permanent:
            raise PermanentError("simulated store rejection (flaky permanent)")
        self.inner.upsert(docs, vectors)
