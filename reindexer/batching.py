"""Writing one batch: embed, upsert, retry transient errors, isolate the documents that fail."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from reindexer.documents import MALFORMED_ERROR, Document, Malformed, preview_of
from reindexer.embedders import Embedder, Vectors
from reindexer.errors import ErrorKind, ReindexerError, classify, describe_fault, retry_after
from reindexer.stores import VectorStore


class StoreUnreachable(ReindexerError):
    """Transient errors kept coming after every retry: the store (or embedder) is down.

    `retries` counts the retries of the batch that gave up, which never commits: the engine adds
    them to the job's count as it fails it.
    """

    def __init__(self, message: str, *, retries: int = 0) -> None:
        super().__init__(message)
        self.retries = retries


class StoreFailed(ReindexerError):
    """The store as a whole failed in a way waiting won't fix (disk full, read only, ...).

    No document is to blame, so none is recorded as failed; `cause` is the original error and
    `where` the file or store it concerns, once known.
    """

    def __init__(self, cause: BaseException, *, where: str | None = None) -> None:
        super().__init__(describe_fault(cause))
        self.cause = cause
        self.where = where

    def __str__(self) -> str:
        detail = describe_fault(self.cause)
        return f"{detail} at {self.where}" if self.where else detail


def _path_of(store: object) -> str | None:
    """The file a store writes to, when it has one (a wrapper such as flaky's names its inner)."""
    current: object = store
    while current is not None:
        path = getattr(current, "path", None)
        if path is not None:
            return str(path)
        current = getattr(current, "inner", None)
    return None


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """What a BatchFailure row records; `locator` and `preview` say where and what the failing
    record is (set for the single-record failures the writer isolates, and malformed records)."""

    doc_ids: list[str]
    error_type: str
    message: str
    traceback: str
    attempts: int
    transient: bool
    locator: str = ""
    preview: str = ""

    @classmethod
    def malformed(cls, record: Malformed) -> FailureRecord:
        return cls(
            [record.id],
            MALFORMED_ERROR,
            record.reason,
            "",
            1,
            False,
            locator=record.locator,
            preview=preview_of(record.raw),
        )


@dataclass
class BatchOutcome:
    written: int = 0
    retries: int = 0
    failures: list[FailureRecord] = field(default_factory=list)
    # The last transient error that was retried, so a job shows why it is slow.
    last_retried_error: str | None = None

    @property
    def failed_docs(self) -> int:
        return sum(len(f.doc_ids) for f in self.failures)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_seconds: float = 0.1
    backoff_cap_seconds: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    @property
    def breaker_threshold(self) -> int:
        """Consecutive transient failures, across groups, after which the store counts as down."""
        return max(8, 3 * (self.max_retries + 1))


@dataclass
class EmbeddedBatch:
    """A batch's documents that embedded, with their vectors, ready to upsert; the documents that
    failed to embed are already in `outcome.failures`, and embedding's retries in its `retries`."""

    docs: list[Document]
    vectors: Vectors
    outcome: BatchOutcome


# One try of a step (embed, or upsert) over the documents docs[start:stop] of a batch.
Step = Callable[[int, int], None]


class _Breaker:
    """Consecutive transient failures of one step, across groups and batches."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.consecutive = 0

    def failed(self, exc: Exception, outcome: BatchOutcome) -> None:
        """Count a transient failure; raises StoreUnreachable once they are too many in a row."""
        self.consecutive += 1
        if self.consecutive >= self.threshold:
            raise StoreUnreachable(
                f"{self.consecutive} transient failures in a row, "
                f"last: {type(exc).__name__}: {exc}",
                retries=outcome.retries,
            ) from exc


class BatchWriter:
    """Writes batches for one job in two steps, each retried and bisected alike: `embed`, then
    `store` (which reuses the vectors, also in the halves it retries). `write` does both.

    Each step counts its own consecutive transient failures, so that the pipelined engine may
    embed the next batch in a thread of its own while this one is stored.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.policy = policy
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._embedding = _Breaker(policy.breaker_threshold)
        self._storing = _Breaker(policy.breaker_threshold)

    def write(self, docs: Sequence[Document]) -> BatchOutcome:
        return self.store_batch(self.embed(docs))

    def embed(self, docs: Sequence[Document]) -> EmbeddedBatch:
        """The documents' vectors; a document that fails to embed alone is recorded as failed."""
        outcome = BatchOutcome()
        pieces: list[tuple[int, int, Vectors]] = []

        def embed(start: int, stop: int) -> None:
            texts = [doc.text for doc in docs[start:stop]]
            pieces.append((start, stop, self.embedder.embed(texts)))

        if docs:
            self._isolate(docs, 0, len(docs), embed, self._embedding, outcome)
        embedded = [doc for start, stop, _ in pieces for doc in docs[start:stop]]
        if not pieces:
            return EmbeddedBatch([], np.zeros((0, self.embedder.dimensions), np.float32), outcome)
        vectors = pieces[0][2] if len(pieces) == 1 else np.concatenate([v for *_, v in pieces])
        return EmbeddedBatch(embedded, vectors, outcome)

    def store_batch(self, batch: EmbeddedBatch) -> BatchOutcome:
        """Upsert an embedded batch; its outcome, with the failures and retries of both steps."""
        docs, vectors, outcome = batch.docs, batch.vectors, batch.outcome

        def upsert(start: int, stop: int) -> None:
            self.store.upsert(docs[start:stop], vectors[start:stop])
            outcome.written += stop - start

        if docs:
            self._isolate(docs, 0, len(docs), upsert, self._storing, outcome)
        return outcome

    def _isolate(
        self,
        docs: Sequence[Document],
        start: int,
        stop: int,
        step: Step,
        breaker: _Breaker,
        outcome: BatchOutcome,
    ) -> None:
        """`step` over docs[start:stop], retrying transient errors; what still fails is halved
        until the documents that fail alone are found and recorded."""
        attempts = 0
        while True:
            attempts += 1
            try:
                step(start, stop)
            except Exception as caught:
                exc = caught
            else:
                breaker.consecutive = 0
                return
            # Handled outside the `except`, so neither the record below nor the errors of the
            # halves chain the error of every enclosing group ("During handling of ...").
            kind = classify(exc)
            if kind is ErrorKind.STORE:
                raise StoreFailed(exc, where=_path_of(self.store)) from exc
            transient = kind is ErrorKind.TRANSIENT
            if transient:
                breaker.failed(exc, outcome)
                if attempts <= self.policy.max_retries:
                    outcome.retries += 1
                    outcome.last_retried_error = f"{type(exc).__name__}: {exc}"
                    # A server's Retry-After is a floor: retrying sooner only earns another 429.
                    self._sleep(max(self.policy.delay(attempts, self._rng), retry_after(exc)))
                    continue
            if stop - start == 1:
                outcome.failures.append(self._failure(docs[start], exc, attempts, transient))
                return
            # Halve and retry each half, so the good documents are still written.
            middle = start + (stop - start) // 2
            self._isolate(docs, start, middle, step, breaker, outcome)
            self._isolate(docs, middle, stop, step, breaker, outcome)
            return

    @staticmethod
    def _failure(doc: Document, exc: Exception, attempts: int, transient: bool) -> FailureRecord:
        return FailureRecord(
            [doc.id],
            type(exc).__name__,
            str(exc),
            "".join(traceback.format_exception(exc)),
            attempts,
            transient,
            locator=doc.locator,
            preview=preview_of(doc.text),
        )
