"""The stores under contract, each opened through the real registry, and the suite's documents.

A harness knows its spec, the longest collection name its store takes, and its server (None for
sqlite-vec, which is a file). Collections get unique names, so the server stores, shared by the
whole session, never see one test's rows in another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from reindexer.documents import Document
from reindexer.errors import is_transient
from reindexer.stores import VectorStore, open_store

DIMS = 16
OTHER_DIMS = 24
# What the restart test waits for at most before a store must work again.
RECOVERY_SECONDS = 30.0
# Attempts at one write under transient faults; at rate 0.5, 40 failures in a row is 1e-12.
TRANSIENT_ATTEMPTS = 40
_T = TypeVar("_T")


class Server(Protocol):
    url: str

    def restart(self) -> None: ...


@dataclass(frozen=True)
class StoreKind:
    """A store spec and what the suite must know of it."""

    spec: str
    server: str | None  # the session fixture of its server, if it has one
    max_name_length: int

    @property
    def transient(self) -> bool:
        """Whether the spec injects transient faults, so writes need the engine's retries."""
        return "transient=" in self.spec


SQLITE_VEC = StoreKind("sqlite-vec", None, 64)
PGVECTOR = StoreKind("pgvector", "pgvector_server", 48)
MILVUS = StoreKind("milvus", "milvus_server", 255)
PLAIN = (SQLITE_VEC, PGVECTOR, MILVUS)
# The wrapper with its faults off must be the inner store, as far as the contract can tell.
WRAPPED = tuple(StoreKind(f"flaky({k.spec})", k.server, k.max_name_length) for k in PLAIN)
TRANSIENT_RATE = 0.5
TRANSIENT = tuple(
    StoreKind(f"flaky({k.spec},transient={TRANSIENT_RATE},seed=7)", k.server, k.max_name_length)
    for k in PLAIN
)
# The whole contract runs on these; the schedule test on TRANSIENT, the restart test on servers.
EVERY = (*PLAIN, *WRAPPED, TRANSIENT[0])
WITH_SERVER = tuple(k for k in (*PLAIN, *WRAPPED) if k.server)


@dataclass
class Harness:
    kind: StoreKind
    server: Server | None
    _opened: list[VectorStore] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return self.kind.spec

    def collection(self, length: int | None = None) -> str:
        """A fresh name every store takes: lower case, digits and '_', `length` long if given."""
        name = f"c_{uuid.uuid4().hex}"
        if length is None:
            return name[:20]
        return (name + "x" * length)[:length]

    def open(self, collection: str, dimensions: int = DIMS) -> VectorStore:
        store = open_store(self.spec, collection, dimensions)
        self._opened.append(store)
        return store

    def restart(self) -> None:
        if self.server is None:
            raise AssertionError(f"{self.spec} has no server to restart")
        # A milvus-lite that aborts as it starts is started again by MilvusServer itself.
        self.server.restart()

    def write(self, store: VectorStore, docs: Sequence[Document]) -> None:
        """Upsert `docs` with their vectors, retrying what the faults made transient."""
        vectors = vectors_of(docs)
        if not self.kind.transient:
            store.upsert(docs, vectors)
            return
        retry_transient(lambda: store.upsert(docs, vectors), TRANSIENT_ATTEMPTS)

    def close(self) -> None:
        for store in self._opened:
            # A store the test closed itself, or whose server the test stopped.
            with contextlib.suppress(Exception):
                store.close()


def retry_transient(call: Callable[[], _T], attempts: int) -> _T:
    for _ in range(attempts - 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
    return call()


@dataclass
class Recovery:
    """What the first call after a restart did: its result, and the errors on the way."""

    result: Any
    errors: list[BaseException]


def until_it_works(call: Callable[[], _T], seconds: float = RECOVERY_SECONDS) -> Recovery:
    """`call()`, retried while it raises errors the engine would retry, for up to `seconds`.

    An error the engine would not retry is raised at once: it would fail the job.
    """
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []
    while True:
        try:
            return Recovery(call(), errors)
        except Exception as exc:
            if not is_transient(exc):
                raise AssertionError(
                    f"after {len(errors)} transient errors, a non-transient"
                    f" {type(exc).__name__}: {exc}"
                ) from exc
            errors.append(exc)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"still failing after {seconds:g}s: {type(exc).__name__}: {exc}"
                ) from exc
            time.sleep(0.2)


def vector_for(key: str, dimensions: int = DIMS) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A vector that depends on `key` alone, so a test can recompute any document's."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return np.random.default_rng(seed).normal(size=dimensions).astype(np.float32)


def vectors_of(docs: Sequence[Document]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Each document's vector, from its text: a new text is a new vector."""
    return np.stack([vector_for(doc.text) for doc in docs])


def cosine_distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(1.0 - a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def make_docs(n: int, prefix: str = "doc") -> list[Document]:
    return [Document(f"{prefix}-{i}", f"{prefix} number {i}", {"n": i}) for i in range(n)]
