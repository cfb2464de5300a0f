"""Writing one batch: embed, upsert, retry transient errors, isolate the documents that fail."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


class BatchWriter:
    """Writes batches for one job; counts consecutive transient failures across batches."""

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
        self._consecutive_transient = 0

    def write(self, docs: Sequence[Document]) -> BatchOutcome:
        outcome = BatchOutcome()
        if docs:
            self._write_group(docs, None, outcome)
        return outcome

    def _write_group(
        self, docs: Sequence[Document], vectors: Vectors | None, outcome: BatchOutcome
    ) -> None:
        attempts = 0
        while True:
            attempts += 1
            try:
                if vectors is None:
                    vectors = self.embedder.embed([doc.text for doc in docs])
                self.store.upsert(docs, vectors)
            except Exception as caught:
                exc = caught
            else:
                self._consecutive_transient = 0
                outcome.written += len(docs)
                return
            # Handled outside the `except`, so neither the record below nor the errors of the
            # halves chain the error of every enclosing group ("During handling of ...").
            kind = classify(exc)
            if kind is ErrorKind.STORE:
                raise StoreFailed(exc, where=_path_of(self.store)) from exc
            transient = kind is ErrorKind.TRANSIENT
            if transient:
                self._consecutive_transient += 1
                if self._consecutive_transient >= self.policy.breaker_threshold:
                    raise StoreUnreachable(
                        f"{self._consecutive_transient} transient failures in a row, "
                        f"last: {type(exc).__name__}: {exc}",
                        retries=outcome.retries,
                    ) from exc
                if attempts <= self.policy.max_retries:
                    outcome.retries += 1
                    outcome.last_retried_error = f"{type(exc).__name__}: {exc}"
                    # A server's Retry-After is a floor: retrying sooner only earns another 429.
                    self._sleep(max(self.policy.delay(attempts, self._rng), retry_after(exc)))
                    continue
            if len(docs) == 1:
                doc = docs[0]
                outcome.failures.append(
                    FailureRecord(
                        [doc.id],
                        type(exc).__name__,
                        str(exc),
                        "".join(traceback.format_exception(exc)),
                        attempts,
                        transient,
                        locator=doc.locator,
                        preview=preview_of(doc.text),
                    )
                )
                return
            # Halve and retry each half, so the good documents are still written.
            middle = len(docs) // 2
            left = vectors[:middle] if vectors is not None else None
            right = vectors[middle:] if vectors is not None else None
            self._write_group(docs[:middle], left, outcome)
            self._write_group(docs[middle:], right, outcome)
            return
