"""Running one claimed job: stream the source in batches, write them, commit each checkpoint."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Field
from django.db.models.functions import Now
from django.utils import timezone
from opentelemetry import context as otel_context
from opentelemetry import trace

from reindexer import conf, slicing, telemetry
from reindexer.batching import (
    BatchOutcome,
    BatchWriter,
    EmbeddedBatch,
    FailureRecord,
    RetryPolicy,
    StoreFailed,
    StoreUnreachable,
)
from reindexer.cleanup import clean_up
from reindexer.content_hashes import BatchHashes, ContentHashes
from reindexer.documents import MALFORMED_ERROR, Malformed
from reindexer.embedders import open_embedder
from reindexer.errors import (
    ReindexerError,
    SourceUnavailable,
    describe_fault,
    is_store_fatal,
    is_transient,
)
from reindexer.jobs import failed_doc_ids, resolve_retried_failures
from reindexer.lease import LeaseKeeper
from reindexer.models import (
    BATCH_COUNTERS,
    Approval,
    BatchFailure,
    Cleanup,
    EventKind,
    JobMode,
    JobStatus,
    LeaseLost,
    Phase,
    ReindexJob,
    lease_fence,
    storable,
)
from reindexer.pacing import Check, Pacer
from reindexer.phases import PhaseTracker
from reindexer.pipeline import (
    BatchStream,
    PathChoice,
    PreparedBatch,
    RetriesSeen,
    choose_path,
    prepared_batches,
)
from reindexer.progress import ProgressPublisher
from reindexer.reconnect import wait_for_database
from reindexer.samples import JobSampler
from reindexer.signals import send_batch_committed
from reindexer.sources import SourceReader, open_source
from reindexer.stores import VectorStore, open_store, store_backend
from reindexer.stores.base import IndexBuildAborted, IndexProgress
from reindexer.swaps import cutover, gate
from reindexer.swaps.names import build_collection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    heartbeat_seconds: float = 5.0
    backoff_seconds: float = 0.1
    lease_seconds: float = 30.0


class Outcome:
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"
    LEASE_LOST = "lease_lost"
    ABANDONED = "abandoned"
    # A sliced job was split (or resumed): its slices run as jobs of their own.
    SLICED = "sliced"
    # A swap job (--approve manual) verified its collection and waits, unleased, for an operator.
    AWAITING_APPROVAL = "awaiting_approval"


# How often an index build's progress is written and pushed (a build reports about once a second).
INDEX_REPORT_SECONDS = 1.0


T = TypeVar("T")


class StopRequested(Exception):
    """The worker is stopping (SIGTERM) while a store call outside a batch waited to retry."""


@dataclass(frozen=True)
class WholeJob:
    """A sliced job's counters as one of its slices' batch commits left them."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "failed_docs",
        "total_docs",
        "processed_docs",
        "retries",
        "max_docs_per_second",
    )

    failed_docs: int
    total_docs: int | None
    processed_docs: int
    retries: int
    # The whole job's rate limit, which its running slices share.
    max_docs_per_second: float | None


class BatchCommitter:
    """Commits a batch's counters, checkpoint and failures in one transaction, fenced by the lease.

    The counter UPDATE is the hot path of a job, so its SQL is built once, not per batch by the ORM
    (which cost about 2.5 ms a batch, against 0.05 ms raw). Its fence is the one `leased()` uses,
    and its parameters are named: the counters by BATCH_COUNTERS, the fence by its fields. The
    heartbeat it renews is the database's clock. A slice's batch adds to its sliced job's counters
    in the same transaction, which also tells how the whole job stands against its error budget.
    """

    def __init__(self, job: ReindexJob, token: uuid.UUID) -> None:
        self.job = job
        self.token = token
        meta = ReindexJob._meta
        q = connection.ops.quote_name
        self._checkpoint_field = meta.get_field("checkpoint")
        self._fence_params: dict[str, Any] = {}
        fence_terms = []
        for name, value in lease_fence(job.pk, token).items():
            field, column = self._field(name)
            self._fence_params[f"fence_{name}"] = field.get_db_prep_value(value, connection)
            fence_terms.append(f"{column} = %(fence_{name})s")
        columns = {name: self._field(name)[1] for name in BATCH_COUNTERS}
        assignments = ", ".join(f"{c} = {c} + %({name})s" for name, c in columns.items())
        table = q(meta.db_table)
        compiler = ReindexJob.objects.none().query.get_compiler(connection=connection)
        now_sql, _ = compiler.compile(Now())
        # Identifiers come quoted from the model's meta; every value is a query parameter.
        self._update_sql = (
            f"UPDATE {table} SET {assignments}, {q('checkpoint')} = %(checkpoint)s, "  # noqa: S608
            f"{q('heartbeat_at')} = {now_sql}, {q('updated_at')} = {now_sql} "
            f"WHERE {' AND '.join(fence_terms)} "
            # One round trip also tells whether a cancel was requested (SQLite 3.35+, PostgreSQL),
            # and the rate limit the next batch runs under.
            f"RETURNING {q('cancel_requested_at')}, {q('max_docs_per_second')}"
        )
        # The job's own rate limit as of the last commit (a slice's is its sliced job's).
        self.limit: float | None = job.max_docs_per_second
        # The sliced job's figures after this slice's batch, its counters as committed.
        self.whole_job: WholeJob | None = None
        self._parent_sql = (
            f"UPDATE {table} SET {assignments}, "  # noqa: S608
            f"{q('heartbeat_at')} = {now_sql}, {q('updated_at')} = {now_sql} "
            f"WHERE {q('id')} = %(parent_id)s "
            f"RETURNING {', '.join(self._field(name)[1] for name in WholeJob.COLUMNS)}"
            if job.parent_id is not None
            else ""
        )

    @staticmethod
    def _field(name: str) -> tuple[Field[Any, Any], str]:
        """ReindexJob's concrete field `name`, and its quoted column."""
        field = ReindexJob._meta.get_field(name)
        if not isinstance(field, Field) or field.column is None:
            raise TypeError(f"ReindexJob.{name} is not a concrete field")
        return field, connection.ops.quote_name(field.column)

    @staticmethod
    def increments(processed: int, outcome: BatchOutcome, skipped: int = 0) -> dict[str, int]:
        """What one written batch adds to each counter of BATCH_COUNTERS."""
        failed = outcome.failed_docs
        return {
            "processed_docs": processed,
            "failed_docs": failed,
            "skipped_docs": skipped,
            "batches_done": 1,
            "batches_failed": 1 if failed else 0,
            "retries": outcome.retries,
        }

    def commit(
        self,
        batch_number: int,
        processed: int,
        outcome: BatchOutcome,
        checkpoint: dict[str, Any],
        *,
        skipped: int = 0,
        hashes: tuple[ContentHashes, BatchHashes] | None = None,
    ) -> bool:
        """Record the batch; return whether a cancel was requested. Raises LeaseLost."""
        return self.commit_counts(
            batch_number,
            self.increments(processed, outcome, skipped),
            outcome.failures,
            checkpoint,
            hashes=hashes,
        )

    def commit_counts(
        self,
        batch_number: int,
        increments: Mapping[str, int],
        failures: Sequence[FailureRecord],
        checkpoint: dict[str, Any],
        *,
        hashes: tuple[ContentHashes, BatchHashes] | None = None,
    ) -> bool:
        """Add `increments` ({counter: n}, every counter of BATCH_COUNTERS) and move the
        checkpoint, with the batch's content hashes; return whether a cancel was requested.
        Raises LeaseLost."""
        if set(increments) != set(BATCH_COUNTERS):
            raise ValueError(f"increments must name exactly {BATCH_COUNTERS}, not {increments}")
        now = timezone.now()
        counts = {name: increments[name] for name in BATCH_COUNTERS}
        params = {
            **counts,
            "checkpoint": self._checkpoint_field.get_db_prep_save(checkpoint, connection),
            **self._fence_params,
        }
        # A batch without failures is one statement, atomic on its own; failures join it in a
        # transaction, so that they are recorded exactly when the checkpoint moves past them,
        # and so do a slice's sliced job and the content hashes of the documents written: a
        # document is marked done exactly when the checkpoint moves past its store write.
        atomic = bool(failures) or bool(self._parent_sql) or bool(hashes and hashes[1])
        with transaction.atomic() if atomic else nullcontext():
            with connection.cursor() as cursor:
                whole = None
                if self._parent_sql:
                    # The sliced job's row first, as a cancel of it locks it before its slices':
                    # one lock order, no deadlock. A lost lease below rolls this back too.
                    cursor.execute(self._parent_sql, {**counts, "parent_id": self.job.parent_id})
                    whole = cursor.fetchone()
                cursor.execute(self._update_sql, params)
                row = cursor.fetchone()
                if row is None:
                    raise LeaseLost(f"job {self.job.pk}: lease {self.token} is no longer held")
                if self._parent_sql:
                    self.whole_job = WholeJob(*whole) if whole else None
            if hashes is not None and hashes[1]:
                hashes[0].record(hashes[1], now)
            if failures:
                BatchFailure.objects.bulk_create(
                    BatchFailure(
                        job=self.job,
                        batch_number=batch_number,
                        doc_ids=[storable(doc_id) for doc_id in f.doc_ids],
                        error_type=storable(f.error_type)[:200],
                        message=storable(f.message),
                        traceback=storable(f.traceback),
                        attempts=f.attempts,
                        transient=f.transient,
                        locator=storable(f.locator)[:1000],
                        preview=storable(f.preview),
                    )
                    for f in failures
                )
        job = self.job
        for name, n in counts.items():
            setattr(job, name, getattr(job, name) + n)
        job.checkpoint = checkpoint
        job.heartbeat_at = now
        job.updated_at = now
        if self._parent_sql:
            self.limit = self.whole_job.max_docs_per_second if self.whole_job else None
        else:
            self.limit = row[1]
        return row[0] is not None


def _store_where(job: ReindexJob) -> str:
    """Where the job's store lives, for an error raised before the store opened."""
    return store_backend(job.store).location(job.collection)


def _embed(
    writer: BatchWriter, batch: PreparedBatch, job_id: int, parent: otel_context.Context | None
) -> EmbeddedBatch:
    """Embed `batch` in a span of its own, under `parent` (else under the current span)."""
    with telemetry.tracer().start_as_current_span(
        "reindex.embed",
        context=parent,
        attributes={
            "reindex.job_id": job_id,
            "reindex.batch_number": batch.number,
            "reindex.batch_size": len(batch.records),
        },
    ) as span:
        batch.embedded = writer.embed(batch.docs)
        span.set_attribute("reindex.failed", batch.embedded.outcome.failed_docs)
        span.set_attribute("reindex.retries", batch.embedded.outcome.retries)
        return batch.embedded


class JobRunner:
    """Runs one job that this worker has claimed under `token`, until it ends or must stop."""

    def __init__(
        self,
        job: ReindexJob,
        token: uuid.UUID,
        worker_id: str,
        *,
        stop: threading.Event,
        options: EngineOptions,
        publisher: ProgressPublisher | None = None,
        bell: threading.Event | None = None,
    ) -> None:
        self.job = job
        self.token = token
        self.worker_id = worker_id
        self.stop = stop
        self.options = options
        self.publisher = publisher
        # Rung by the worker's LISTEN thread (a NOTIFY: a limit changed, a cancel) and by a stop:
        # it ends a pacing wait at once. Without one, the wait polls and a stop still ends it.
        self.bell = bell
        self._pacer = Pacer()
        # The collection's content hashes, once the embedder's dimensions are known.
        self._hashes: ContentHashes | None = None
        self._keeper: LeaseKeeper | None = None
        # (batches_done, monotonic deadline) of the database blink being waited out, if any.
        self._blink: tuple[int, float] | None = None
        # When this worker last renewed the lease, on its own monotonic clock: what the lease
        # has left is measured from there, never by comparing its clock with the database's.
        self._renewed = time.monotonic()
        self._phases = PhaseTracker(job, token, worker_id)
        # A slice: its sliced job's (failed_docs, total_docs) as of the last commit.
        self._whole_job: WholeJob | None = None

    def run(self) -> str:
        job = self.job
        span_context = telemetry.context_from(job.trace_context)
        with telemetry.tracer().start_as_current_span(
            "reindex.job",
            context=span_context,
            attributes={
                "reindex.job_id": job.pk,
                "reindex.source": job.source,
                "reindex.store": job.store,
                "reindex.worker": self.worker_id,
                "reindex.resumed": bool(job.checkpoint),
            },
        ) as span:
            keeper = self._keeper = self._start_keeper()
            try:
                # One pass per stretch of database uptime: a blink resumes from the checkpoint.
                while True:
                    try:
                        outcome = self._run(keeper)
                    except LeaseLost:
                        outcome = Outcome.LEASE_LOST
                    except (OperationalError, InterfaceError) as exc:
                        # The job database blinked. Every committed batch is safe behind the
                        # checkpoint: wait for it, and carry on while the lease is still ours.
                        span.record_exception(exc)
                        resumed = self._reconnect(exc)
                        if resumed is None:
                            if keeper.stopped:  # a final transition had ended its heartbeats
                                keeper = self._keeper = self._start_keeper()
                            continue
                        outcome = resumed
                    except Exception as exc:
                        # A bug or an unforeseen error: fail this job loudly, keep the worker alive.
                        logger.exception("job %s: unexpected error", job.pk)
                        span.record_exception(exc)
                        try:
                            outcome = self._fail(f"unexpected {type(exc).__name__}: {exc}")
                        except LeaseLost:
                            outcome = Outcome.LEASE_LOST
                    break
            finally:
                keeper.stop()
            if outcome in (Outcome.FAILED, Outcome.CANCELLED):
                # Its store is closed by now; the alias and what it serves are left as they were.
                cutover.drop_built(job, self.worker_id, f"the job {outcome}")
            span.set_attribute("reindex.outcome", outcome)
            self._publish(force=True)
            return outcome

    def _start_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(self.job, self.token, self.options.heartbeat_seconds).start()

    def _reconnect(self, exc: Exception) -> str | None:
        """Wait out a database blink: None to carry on from the checkpoint, else the outcome."""
        job = self.job
        # A blink may last as long as the lease that was renewed last; resumes that commit
        # nothing do not renew that allowance, so a database that fails every pass gives up too.
        if self._blink is None or self._blink[0] != job.batches_done:
            self._blink = (job.batches_done, self._lease_deadline())

        def renew_and_reload() -> None:
            job.heartbeat(self.token)  # the fenced check: one UPDATE that matches only our lease
            job.refresh_from_db()

        try:
            answered = wait_for_database(
                renew_and_reload,
                failed=exc,
                deadline=self._blink[1],
                what=f"job {job.pk}: job database unavailable",
                log=logger,
            )
        except LeaseLost:
            logger.warning("job %s: lease lost while the job database was away", job.pk)
            return Outcome.LEASE_LOST
        if not answered:
            logger.error(
                "job %s: job database unavailable for the whole lease; it resumes from its"
                " checkpoint once the lease expires",
                job.pk,
            )
            connection.close()
            return Outcome.ABANDONED
        logger.info("job %s: job database back; resuming at %s", job.pk, job.checkpoint)
        return None

    def _lease_deadline(self) -> float:
        """When, on the monotonic clock, the lease lapses if nobody renews it."""
        renewed = [self._renewed, self._keeper.renewed_monotonic if self._keeper else None]
        return max(at for at in renewed if at is not None) + self.options.lease_seconds

    def _run(self, keeper: LeaseKeeper) -> str:
        job = self.job
        store: VectorStore | None = None
        reader: SourceReader | None = None
        try:
            if job.is_sliced:
                return self._run_sliced()
            only = set(failed_doc_ids(job.retry_of)) if job.retry_of_id and job.retry_of else None
            source = open_source(job.source)
            phases = self._phases
            if job.total_docs is None:
                phases.enter(Phase.COUNTING)
                total = len(only) if only is not None else source.count()
                self._set_total(total)
            if job.checkpoint:
                job.log(
                    EventKind.CHECKPOINT_RESUMED,
                    self.worker_id,
                    f"resuming after {job.processed_docs} documents at {job.checkpoint}",
                )
            embedder = open_embedder(job.embedder)
            # Known before anything is written: an existing collection of other dimensions
            # fails the job here (DimensionMismatch from the store's open), with both numbers.
            self._set_dimensions(embedder.dimensions)
            policy = RetryPolicy(job.max_retries, self.options.backoff_seconds)
            store = self._open_store(embedder.dimensions, policy)
            # A swap job's collection is new: no record of what it held before applies to it.
            self._hashes = (
                None if job.mode == JobMode.SWAP else ContentHashes(job, embedder.dimensions)
            )
            if not job.is_slice and not job.checkpoint:
                self._forget_stale_hashes(store, policy)
            writer = BatchWriter(embedder, store, policy)
            reader = source.open(job.checkpoint or None, bounds=job.slice_bounds or None)
            phases.enter(Phase.WRITING, total=job.total_docs)
            return self._loop(reader, writer, only, keeper)
        except LeaseLost:
            raise
        except StopRequested:
            return self._hand_back()
        except StoreFailed as exc:
            trace.get_current_span().record_exception(exc.cause)
            if store is not None:
                # First: on a shared full disk, the store's open WAL holds the space the job
                # database needs to record the failure; closing checkpoints and frees it.
                store.close()
                store = None
            return self._fail(f"store failed: {exc}")
        except (OperationalError, InterfaceError) as exc:
            if not is_store_fatal(exc):
                raise  # a blink: run() leaves the job to its lease
            if store is not None:
                # As above: on a shared full disk, the store's WAL holds the space the failure's
                # record needs.
                store.close()
                store = None
            return self._job_database_failed(exc)
        except (ReindexerError, OSError) as exc:
            trace.get_current_span().record_exception(exc)
            return self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            if reader is not None:
                reader.close()
            if store is not None:
                store.close()

    def _run_sliced(self) -> str:
        """A sliced job: split it into slices, leave it to them, or finish it once they ended."""
        job = self.job
        if not job.slice_jobs.exists():
            return self._split()
        if job.slice_jobs.active().exists():  # resumed: its reopened slices wait for workers
            self._end_heartbeats()
            slicing.release(job, self.token)
            return Outcome.SLICED
        return self._finish_sliced()

    def _split(self) -> str:
        job = self.job
        source = open_source(job.source)
        self._phases.enter(Phase.COUNTING)
        embedder = open_embedder(job.embedder)
        self._set_dimensions(embedder.dimensions)
        policy = RetryPolicy(job.max_retries, self.options.backoff_seconds)
        # Opened once here, so that a store that cannot take the job (other dimensions, a bad
        # name) fails it before any slice exists.
        store = self._open_store(embedder.dimensions, policy)
        try:
            self._hashes = ContentHashes(job, embedder.dimensions)
            self._forget_stale_hashes(store, policy)
        finally:
            store.close()
        parts = source.split(job.slices)
        if not slicing.create_slices(job, self.token, self.worker_id, parts):
            return self._confirm_cancel()  # asked to cancel while it was being split
        self._phases.enter(Phase.WRITING, total=job.total_docs)
        self._end_heartbeats()
        return Outcome.SLICED

    def _finish_sliced(self) -> str:
        """Every slice has ended: end the sliced job as they did (building the index first)."""
        job = self.job
        job.refresh_from_db()
        status, error = job.sliced_end_state()
        if status == JobStatus.FAILED:
            return self._fail(error)
        if status == JobStatus.CANCELLED:
            if job.cancel_requested_at is None:  # a slice cancelled on its own (the admin)
                job.request_cancel(self.worker_id, reason="a slice was cancelled")
            return self._confirm_cancel()
        if self._over_budget(final=True):
            return self._fail(self._budget_error())
        if job.dimensions is None:
            raise ReindexerError(f"job {job.pk} has slices but no dimensions")
        policy = RetryPolicy(job.max_retries, self.options.backoff_seconds)
        store = self._open_store(job.dimensions, policy)
        try:
            stopped = self._build_index(store, policy)
            if stopped is None:
                self._clean_up(store, policy, job.dimensions)
        finally:
            store.close()
        if stopped is not None:
            return stopped
        self._end_heartbeats()
        job.complete(self.token, self.worker_id)
        return Outcome.COMPLETED

    def _open_store(self, dimensions: int, policy: RetryPolicy) -> VectorStore:
        """Open the job's store. A server that is away is retried (and counted) like a batch;
        one that cannot be opened for good (read only, corrupt, other dimensions...) fails."""
        job = self.job
        collection = build_collection(job)  # a swap job's own ALIAS__<job id>
        return self._retrying_store(
            lambda: open_store(job.store, collection, dimensions), "store open", policy
        )

    def _retrying_store(self, call: Callable[[], T], what: str, policy: RetryPolicy) -> T:
        """`call()`, a call to the store outside any batch: its transient errors are retried with
        backoff and counted until the breaker; any other error fails the job as the store's.

        The lease, the job database and a requested stop are not the store's business: their
        errors go up unchanged, and a SIGTERM cuts a backoff short (StopRequested).
        """
        attempts = 0
        while True:
            try:
                return call()
            except (LeaseLost, DatabaseError, IndexBuildAborted):
                raise
            except Exception as exc:
                attempts += 1
                # As for batches, the breaker decides when an absent server counts as down.
                if not is_transient(exc) or attempts >= policy.breaker_threshold:
                    raise StoreFailed(exc, where=_store_where(self.job)) from exc
                self._add_retries(1)
                self.job.note_error(self.token, f"{what} retried: {type(exc).__name__}: {exc}")
                rng = random.Random()  # noqa: S311 - jitter, not crypto
                if self.stop.wait(policy.delay(attempts, rng)):
                    raise StopRequested(f"job {self.job.pk}: stop requested during {what}") from exc

    def _set_dimensions(self, dimensions: int) -> None:
        if self.job.dimensions == dimensions:
            return
        updated = ReindexJob.objects.leased(self.job.pk, self.token).update(
            dimensions=dimensions, updated_at=Now()
        )
        if updated != 1:
            raise LeaseLost(f"job {self.job.pk}: lease lost before it started")
        self.job.dimensions = dimensions

    def _set_total(self, total: int) -> None:
        updated = ReindexJob.objects.leased(self.job.pk, self.token).update(
            total_docs=total, updated_at=Now()
        )
        if updated != 1:
            raise LeaseLost(f"job {self.job.pk}: lease lost before it started")
        self.job.total_docs = total

    def _loop(
        self, reader: SourceReader, writer: BatchWriter, only: set[str] | None, keeper: LeaseKeeper
    ) -> str:
        if self.job.cancel_requested_at is not None:
            return self._confirm_cancel()
        # Retries made inside the source and the embedder (a source server that blinked, the
        # embedder's dimension probe) join the job's count with the batch they were made for.
        retried = RetriesSeen(reader, writer.embedder)
        stream = self._open_stream(reader, writer, only, retried)
        ending: Callable[[], str] | None = None
        unreachable: StoreUnreachable | None = None
        try:
            ending = self._write_batches(stream, writer, retried, keeper)
        except StoreUnreachable as exc:
            unreachable = exc
        finally:
            # At a batch boundary or on an error: the prefetch thread is stopped and joined,
            # and the batches it read ahead are dropped, to be redone from the checkpoint.
            dropped = stream.close()
        # The retries made for the dropped batches (and for a batch that gave up) happened all
        # the same; no commit will carry them.
        held = unreachable.retries if unreachable is not None else 0
        ahead = sum(
            batch.retries + (batch.embedded.outcome.retries if batch.embedded else 0)
            for batch in dropped
        )
        self._add_retries(held + ahead + retried.new())
        if unreachable is not None:
            return self._fail(f"store unreachable: {unreachable}")
        if ending is not None:
            return ending()
        return self._complete(writer)

    def _open_stream(
        self,
        reader: SourceReader,
        writer: BatchWriter,
        only: set[str] | None,
        retried: RetriesSeen,
    ) -> BatchStream:
        """The job's batches, embedded ahead in a thread where that pays (REINDEXER_PIPELINE)."""
        job = self.job
        path = choose_path(conf.get().pipeline, writer.embedder, job.store)
        if job.mode == JobMode.INCREMENTAL and path.pipelined:
            # The prefetch thread never touches the job database, and the hashes that decide
            # what to embed live there: the lookup, and so the embedding, stay on this thread.
            path = PathChoice(
                False, "sequential: an incremental job looks up its hashes before embedding"
            )
        logger.info("job %s: %s", job.pk, path.reason)
        trace.get_current_span().set_attribute("reindex.pipelined", path.pipelined)
        # The thread's embed spans are children of the job span: the context crosses explicitly.
        embed = self._embed_ahead(writer, otel_context.get_current()) if path.pipelined else None
        batches = prepared_batches(
            reader, job.batch_size, only, retried, job.batches_done + 1, embed
        )
        return BatchStream(batches, ahead=path.pipelined, name=f"prefetch-job-{job.pk}")

    def _embed_ahead(
        self, writer: BatchWriter, parent: otel_context.Context
    ) -> Callable[[PreparedBatch], EmbeddedBatch]:
        """Embedding in the prefetch thread (which never touches the Django database), its
        spans children of the job span."""
        return lambda batch: _embed(writer, batch, self.job.pk, parent)

    def _write_batches(
        self,
        batches: Iterable[PreparedBatch],
        writer: BatchWriter,
        retried: RetriesSeen,
        keeper: LeaseKeeper,
    ) -> Callable[[], str] | None:
        """Write and commit the batches in order; how the job ends if it must stop at a batch
        boundary (a cancel, the error budget, a stop), None once the source is exhausted."""
        job = self.job
        committer = BatchCommitter(job, self.token)
        sampler = JobSampler(job)
        # A sliced job's rate chart follows its summed counters, sampled by its slices.
        parent = (
            ReindexJob.objects.filter(pk=job.parent_id).first()
            if job.parent_id is not None
            else None
        )
        parent_sampler = JobSampler(parent) if parent is not None else None
        for batch in self._source_retries_counted(batches, retried):
            if keeper.lost.is_set():
                raise LeaseLost(f"job {job.pk}: lease lost")
            # The limit read at the last commit applies from this batch on.
            paced = self._pace(keeper)
            if paced is not None:
                return paced
            began = time.monotonic()
            outcome, hashes = self._write_batch(writer, batch)
            outcome.retries += batch.retries
            skipped = len(batch.unchanged)
            cancel_requested = committer.commit(
                batch.number,
                len(batch.records),
                outcome,
                batch.checkpoint,
                skipped=skipped,
                hashes=(self._hashes, hashes) if self._hashes is not None else None,
            )
            self._pacer.charge(len(batch.records), self._share_of(committer.limit), began)
            send_batch_committed(
                JobRunner,
                job=job,
                seconds=time.monotonic() - began,
                written=outcome.written,
                failed=outcome.failed_docs,
                skipped=skipped,
                retries=outcome.retries,
            )
            self._renewed = time.monotonic()
            self._whole_job = whole = committer.whole_job
            sampler.note(job)
            if parent is not None and parent_sampler is not None and whole is not None:
                parent.processed_docs, parent.failed_docs = whole.processed_docs, whole.failed_docs
                parent.retries = whole.retries
                parent_sampler.note(parent)
            if outcome.last_retried_error is not None:
                job.note_error(
                    self.token, f"batch {batch.number} retried: {outcome.last_retried_error}"
                )
            self._publish()
            if cancel_requested and job.is_slice:
                return self._confirm_cancel  # stopped with its sliced job: not failed again
            # Only a batch that added failures can newly exceed the budget: a job resumed over
            # its budget still writes the rest of its documents, and ends failed at the end.
            if outcome.failed_docs and self._over_budget(final=False):
                return lambda: self._fail(self._budget_error())
            if cancel_requested:
                return self._confirm_cancel
            if self.stop.is_set():
                return self._hand_back
        return None

    def _complete(self, writer: BatchWriter) -> str:
        """Every batch is written: check the budget, build the index, complete the job."""
        job = self.job
        # A slice leaves the final budget check to its sliced job, once every slice has ended.
        if not job.is_slice and self._over_budget(final=True):
            return self._fail(self._budget_error())
        # A slice leaves the index to its sliced job, built once every slice has written.
        stopped = None if job.is_slice else self._build_index(writer.store, writer.policy)
        if stopped is not None:
            return stopped
        if job.mode == JobMode.SWAP:
            return self._cut_over(writer)
        if not job.is_slice:  # a sliced job cleans up once, as it completes
            self._clean_up(writer.store, writer.policy, writer.embedder.dimensions)
        self._end_heartbeats()
        with transaction.atomic():
            job.complete(self.token, self.worker_id)
            resolve_retried_failures(job)
        return Outcome.COMPLETED

    def _cut_over(self, writer: BatchWriter) -> str:
        """Swap mode, once written and indexed: the cutover gate, then the alias moves (auto),
        or the job waits for an operator (manual). A failed gate fails the job; run() then drops
        its collection."""
        job = self.job
        self._phases.enter(Phase.VERIFYING)

        def retrying(call: Callable[[], T], what: str) -> T:
            return self._retrying_store(call, what, writer.policy)

        with telemetry.tracer().start_as_current_span(
            "reindex.verify", attributes={"reindex.job_id": job.pk}
        ) as span:
            verification = gate.run_gate(job, writer.store, writer.embedder, retrying)
            span.set_attribute("reindex.passed", verification["passed"])
        cutover.record_verification(job, self.token, verification)
        if not verification["passed"]:
            return self._fail("cutover gate failed: " + "; ".join(verification["failures"]))
        self._phases.finish(Phase.VERIFYING, "passed")
        if self._cancel_requested():
            return self._confirm_cancel()
        if job.approve == Approval.MANUAL:
            self._end_heartbeats()
            try:
                job.await_approval(self.token, self.worker_id, gate.summary(verification))
            except LeaseLost:
                return self._confirm_cancel()  # asked to cancel meanwhile (else the lease went)
            return Outcome.AWAITING_APPROVAL
        self._phases.enter(Phase.SWAPPING)
        self._end_heartbeats()
        try:
            cutover.swap(job, self.worker_id, token=self.token)
        except cutover.AliasMoved as exc:
            return self._fail(f"cutover refused: {exc}")
        return Outcome.COMPLETED

    def _source_retries_counted(
        self, batches: Iterable[PreparedBatch], retried: RetriesSeen
    ) -> Iterator[PreparedBatch]:
        """The batches; when the source gives up, the retries it made still join the job's."""
        try:
            yield from batches
        except SourceUnavailable:
            # The prefetch thread, if any, has ended: the count is this thread's to take.
            self._add_retries(retried.new())
            raise

    def _add_retries(self, n: int) -> None:
        """Count retries that no batch commit will carry (the batch that gave up)."""
        if n:
            with transaction.atomic():
                if self.job.parent_id is not None:  # parent first: the commit's lock order
                    ReindexJob.objects.filter(pk=self.job.parent_id).update(
                        retries=F("retries") + n
                    )
                if (
                    ReindexJob.objects.leased(self.job.pk, self.token).update(
                        retries=F("retries") + n
                    )
                    != 1
                ):
                    raise LeaseLost(f"job {self.job.pk}: lease {self.token} is no longer held")
            self.job.retries += n

    def _share_of(self, limit: float | None) -> float | None:
        """A slice's part of its sliced job's rate limit: shared by the slices running now."""
        job = self.job
        if not limit or job.parent_id is None:
            return limit
        running = ReindexJob.objects.filter(
            parent_id=job.parent_id, status=JobStatus.RUNNING
        ).count()
        return limit / max(1, running)

    def _current_limit(self) -> tuple[float | None, bool]:
        """The rate limit this job runs under now, and whether a cancel was requested."""
        job = self.job
        limit, cancel = (
            ReindexJob.objects.filter(pk=job.pk)
            .values_list("max_docs_per_second", "cancel_requested_at")
            .get()
        )
        if job.parent_id is not None:
            limit = (
                ReindexJob.objects.filter(pk=job.parent_id)
                .values_list("max_docs_per_second", flat=True)
                .first()
            )
        return self._share_of(limit), cancel is not None

    def _pace(self, keeper: LeaseKeeper) -> Callable[[], str] | None:
        """Wait until the rate limit lets the next batch begin; how the job ends if it must stop
        meanwhile (a cancel, a stop), else None. A NOTIFY (the bell) or, without one, the
        poll brings a changed limit in at once."""
        pacer = self._pacer
        if pacer.left() <= 0:
            return None
        ending: list[Callable[[], str]] = []

        def check() -> Check:
            if self.bell is not None:
                self.bell.clear()  # before reading: a later ring wakes the next step
            if keeper.lost.is_set():
                raise LeaseLost(f"job {self.job.pk}: lease lost while pacing")
            if self.stop.is_set():
                ending.append(self._hand_back)
                return Check(None, stop=True)
            limit, cancel_requested = self._current_limit()
            if cancel_requested:
                ending.append(self._confirm_cancel)
                return Check(None, stop=True)
            return Check(limit)

        event = self.bell if self.bell is not None else self.stop
        waited = pacer.wait(event, conf.get().poll_seconds, check)
        trace.get_current_span().set_attribute(
            "reindex.paced_seconds", round(pacer.paced_seconds, 3)
        )
        return None if waited else ending[0]

    def _forget_stale_hashes(self, store: VectorStore, policy: RetryPolicy) -> None:
        """An incremental job over an empty collection (dropped, recreated) writes everything:
        the records of what it held before are stale."""
        if self.job.mode != JobMode.INCREMENTAL or self._hashes is None:
            return
        if self._retrying_store(store.count, "store count", policy) == 0:
            forgotten = self._hashes.forget_all()
            if forgotten:
                logger.info(
                    "job %s: the collection is empty; forgot %d stale content hashes",
                    self.job.pk,
                    forgotten,
                )

    def _clean_up(self, store: VectorStore, policy: RetryPolicy, dimensions: int) -> None:
        """--cleanup full, once every document is written (and indexed): delete the documents
        that left the source. A retry job saw only its failed documents: it cleans nothing."""
        job = self.job
        if job.cleanup != Cleanup.FULL or job.retry_of_id is not None:
            return
        if self._keeper is not None and self._keeper.lost.is_set():
            raise LeaseLost(f"job {job.pk}: lease lost before its cleanup")
        hashes = self._hashes or ContentHashes(job, dimensions)

        def retrying(call: Callable[[], T], what: str) -> T:
            return self._retrying_store(call, what, policy)

        with telemetry.tracer().start_as_current_span(
            "reindex.cleanup", attributes={"reindex.job_id": job.pk}
        ) as span:
            deleted = clean_up(job, store, hashes, retrying)
            span.set_attribute("reindex.deleted", deleted)
        job.log(
            EventKind.CLEANED_UP,
            self.worker_id,
            f"deleted {deleted} documents that left the source",
        )

    def _build_index(self, store: VectorStore, policy: RetryPolicy) -> str | None:
        """The indexing phase, where the store builds a search index once every document is
        written (pgvector's HNSW). None once built, or when the store has none to build; else
        the outcome of a cancel, a stop or a lost lease that interrupted it."""
        job = self.job
        phases = self._phases
        entered = False
        reported_at = 0.0

        def report(progress: IndexProgress) -> bool:
            # Entered on the store's first report, so a store with no index shows no phase.
            nonlocal entered, reported_at
            now = time.monotonic()
            if not entered:
                phases.enter(Phase.INDEXING, total=progress.total, detail=progress.detail)
                entered = True
            elif now - reported_at < INDEX_REPORT_SECONDS:
                return not self._must_stop_indexing()
            else:
                phases.report(
                    Phase.INDEXING, done=progress.done, total=progress.total, detail=progress.detail
                )
            reported_at = now
            self._publish(force=True)
            return not self._must_stop_indexing()

        started = time.monotonic()
        try:
            with telemetry.tracer().start_as_current_span(
                "reindex.index", attributes={"reindex.job_id": job.pk}
            ):
                built = self._retrying_store(
                    lambda: store.build_index(report), "index build", policy
                )
        except (IndexBuildAborted, StopRequested):
            if self._keeper is not None and self._keeper.lost.is_set():
                raise LeaseLost(f"job {job.pk}: lease lost while indexing") from None
            if self._cancel_requested():
                return self._confirm_cancel()
            return self._hand_back()
        if entered:
            seconds = time.monotonic() - started
            phases.finish(Phase.INDEXING, f"index built in {seconds:.1f} s" if built else "")
        return None

    def _cancel_requested(self) -> bool:
        return ReindexJob.objects.filter(pk=self.job.pk, cancel_requested_at__isnull=False).exists()

    def _must_stop_indexing(self) -> bool:
        lost = self._keeper is not None and self._keeper.lost.is_set()
        return lost or self.stop.is_set() or self._cancel_requested()

    def _end_heartbeats(self) -> None:
        """Before a final transition: a beat after it would find the lease gone and cry wolf."""
        if self._keeper is not None:
            self._keeper.stop()

    def _confirm_cancel(self) -> str:
        self._end_heartbeats()
        self.job.confirm_cancel(self.token, self.worker_id)
        return Outcome.CANCELLED

    def _hand_back(self) -> str:
        self._end_heartbeats()
        try:
            self.job.hand_back(
                self.token, self.worker_id, "worker shutting down; resumes from its checkpoint"
            )
        except LeaseLost:
            # A cancel request that arrived after this batch's commit forbids the hand-back (a
            # pending job cannot be cancelling): honour the cancel now rather than leave the job
            # running, unowned, until its lease expires. Raises LeaseLost if the lease really went.
            return self._confirm_cancel()
        return Outcome.HANDED_BACK

    def _write_batch(
        self, writer: BatchWriter, batch: PreparedBatch
    ) -> tuple[BatchOutcome, BatchHashes]:
        """Embed (unless done ahead) and store the batch; its outcome, and the content hashes
        its commit records. An incremental job skips the documents whose hash is unchanged."""
        records = batch.records
        with telemetry.tracer().start_as_current_span(
            "reindex.batch",
            attributes={
                "reindex.job_id": self.job.pk,
                "reindex.batch_number": batch.number,
                "reindex.batch_size": len(records),
            },
        ) as span:
            hashes = self._hashes
            digests = hashes.digests(batch.all_docs) if hashes is not None else {}
            if hashes is not None and self.job.mode == JobMode.INCREMENTAL:
                batch.unchanged = hashes.unchanged(digests)  # before embedding: on this thread
            # Embedded ahead by the pipeline, or here (the sequential path); a batch with nothing
            # to embed (all unchanged) makes no embedding span.
            ahead = batch.embedded is not None
            to_embed = batch.docs
            embedded = batch.embedded or (
                _embed(writer, batch, self.job.pk, None) if to_embed else writer.embed(to_embed)
            )
            outcome = writer.store_batch(embedded)
            outcome.failures.extend(
                FailureRecord.malformed(r) for r in records if isinstance(r, Malformed)
            )
            span.set_attribute("reindex.skipped", len(batch.unchanged))
            span.set_attribute("reindex.pipelined", ahead)
            span.set_attribute("reindex.attempts", 1 + outcome.retries)
            span.set_attribute("reindex.written", outcome.written)
            span.set_attribute("reindex.failed", outcome.failed_docs)
            span.set_attribute("reindex.outcome", "partial" if outcome.failures else "ok")
            for failure in outcome.failures:
                if failure.error_type != MALFORMED_ERROR:
                    span.add_event(
                        "exception",
                        {
                            "exception.type": failure.error_type,
                            "exception.message": failure.message,
                            "exception.stacktrace": failure.traceback,
                            "reindex.doc_ids": failure.doc_ids,
                        },
                    )
            return outcome, self._batch_hashes(digests, batch.unchanged, outcome)

    @staticmethod
    def _batch_hashes(
        digests: dict[str, str], unchanged: frozenset[str], outcome: BatchOutcome
    ) -> BatchHashes:
        """The records a batch's commit writes: a digest for each document stored, and a
        mark for the others (skipped, or failed: a failed write marks nothing done)."""
        not_written = unchanged.union(
            doc_id for failure in outcome.failures for doc_id in failure.doc_ids
        )
        written = {doc_id: d for doc_id, d in digests.items() if doc_id not in not_written}
        seen = [doc_id for doc_id in digests if doc_id not in written]
        return BatchHashes(written, seen)

    def _budget_figures(self) -> tuple[int, int | None]:
        """(failed_docs, total_docs) that the error budget applies to: the whole job's."""
        if self.job.is_slice:
            whole = self._whole_job
            return (whole.failed_docs, whole.total_docs) if whole else (0, None)
        return self.job.failed_docs, self.job.total_docs

    def _over_budget(self, *, final: bool) -> bool:
        job = self.job
        failed, total = self._budget_figures()
        if total is None:
            if not final or job.is_slice:  # a slice's end is not its job's
                return False
            total = job.processed_docs
        return failed > job.max_failed_ratio * total

    def _budget_error(self) -> str:
        job = self.job
        failed, total = self._budget_figures()
        return (
            f"error budget exceeded: {failed} of {total} documents failed, "
            f"more than max_failed_ratio={job.max_failed_ratio:g}"
        )

    def _fail(self, error: str) -> str:
        logger.error("job %s failed: %s", self.job.pk, error)
        span = trace.get_current_span()
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        self._end_heartbeats()
        try:
            self.job.fail(self.token, self.worker_id, error)
        except OperationalError as exc:
            if not is_store_fatal(exc):
                raise
            # A full job database may still take one small in-place UPDATE where the transition
            # and its event do not fit; closing its last connection first lets SQLite checkpoint
            # and drop its WAL, which frees the room.
            logger.warning("job %s: failing it in place: %s", self.job.pk, exc)
            connection.close()
            self.job.fail_in_place(self.token, self.worker_id, error)
        # A failed slice fails its whole job: the other slices stop at their next boundary.
        slicing.stop_whole_job(self.job, error, self.worker_id)
        return Outcome.FAILED

    def _job_database_failed(self, exc: OperationalError | InterfaceError) -> str:
        """Fail the job on a job-database error that waiting won't fix (disk full, read only...).

        Recording it is itself a write, which may fail the same way; then the error goes up to
        run(), which leaves the job to its lease, and the reclaim limit ends the loop.
        """
        trace.get_current_span().record_exception(exc)
        name = connection.settings_dict.get("NAME")
        error = f"job database failed: {describe_fault(exc)}" + (f" at {name}" if name else "")
        try:
            return self._fail(error)
        except (OperationalError, InterfaceError):
            logger.error("job %s: cannot record its failure: %s", self.job.pk, error)
            raise

    def _publish(self, *, force: bool = False) -> None:
        if self.publisher is not None:
            self.publisher.publish(self.job.pk, force=force)
            if self.job.parent_id is not None:  # its batch moved the sliced job's figures too
                self.publisher.publish(self.job.parent_id, force=force)
