"""The pipelined engine on real stores: every document written once and every checkpoint committed
in order; a cancel, a stop and a source that breaks mid-read, at the next batch boundary and with
no thread left behind; the same counters and failures as the sequential path; a SIGKILLed worker
resumed; the embed spans; and REINDEXER_PIPELINE choosing the path."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import pytest
from django.db import connection
from django.utils import timezone
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id

from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.engine import EngineOptions, JobRunner, Outcome
from reindexer.errors import SpecError
from reindexer.models import BatchFailure, JobStatus, ReindexJob
from reindexer.stores import STORES, open_store, store_backend
from reindexer.stores.base import VectorStore
from reindexer.stores.delegating import DelegatingBackend, DelegatingStore
from reindexer.verify import verify_job
from tests.integration.conftest import Processes, event_kinds, finish, wait_until
from tests.tracing.conftest import span_exporter  # noqa: F401 - a session fixture, shared

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
Run = Callable[..., None]

PREFETCH_THREAD = "prefetch-job-"
SLOW_STORE = "flaky(sqlite-vec,latency=20)"
FAST_LEASE = {"REINDEXER_LEASE_SECONDS": "1.5", "REINDEXER_HEARTBEAT_SECONDS": "0.3"}


# A store that records, at each upsert, the ids it was given, the checkpoint then committed for
# its collection's running job, and whether a prefetch thread was alive: `recording(INNER,ms)`.


@dataclass(frozen=True)
class Upsert:
    ids: list[str]
    committed: dict[str, Any] | None
    prefetching: bool


UPSERTS: dict[str, list[Upsert]] = {}


@dataclass(frozen=True)
class RecordingOptions:
    inner: str
    latency_ms: float = 0.0

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not spec.items or not spec.items[0]:
            raise SpecError("recording(INNER[,MS]) must name its inner store")
        latency = float(spec.items[1]) if len(spec.items) > 1 else 0.0
        return cls(spec.items[0], latency)


class RecordingBackend(DelegatingBackend):
    def __init__(self, options: RecordingOptions) -> None:
        super().__init__(store_backend(options.inner))
        self.options = options

    def open(self, collection: str, dimensions: int) -> VectorStore:
        inner = self.inner.open(collection, dimensions)
        return RecordingStore(inner, collection, self.options.latency_ms)


@dataclass
class RecordingStore(DelegatingStore):
    inner: VectorStore
    collection: str
    latency_ms: float
    log: list[Upsert] = field(init=False)

    def __post_init__(self) -> None:
        self.log = UPSERTS.setdefault(self.collection, [])

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        running = ReindexJob.objects.filter(collection=self.collection, status=JobStatus.RUNNING)
        committed = running.values_list("checkpoint", flat=True).first()
        prefetching = any(t.name.startswith(PREFETCH_THREAD) for t in threading.enumerate())
        self.log.append(Upsert([doc.id for doc in docs], committed, prefetching))
        time.sleep(self.latency_ms / 1000)
        self.inner.upsert(docs, vectors)


@pytest.fixture(autouse=True, scope="module")
def recording_store() -> Iterator[None]:
    """`recording(...)` for this module's tests only: a registry entry left behind would show
    up in every later test's list of stores."""
    STORES.register("recording", RecordingOptions, RecordingBackend, takes_items=True)
    try:
        yield
    finally:
        STORES.unregister("recording")


@pytest.fixture
def pipeline(settings: Any) -> Callable[[str], None]:
    """Set REINDEXER_PIPELINE for the jobs this process runs."""

    def use(value: str) -> None:
        settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pipeline=value)

    return use


@pytest.fixture
def engine_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The engine's log lines (pytest attaches caplog to non-propagating loggers too)."""
    caplog.set_level(logging.INFO, logger="reindexer.engine")
    return caplog


def prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PREFETCH_THREAD)]


def checkpoints_of(corpus: Path, batch_size: int) -> list[dict[str, int]]:
    """The JSONL reader's checkpoint after each batch of `corpus`."""
    ends, offset = [], 0
    for line in corpus.read_bytes().splitlines(keepends=True):
        offset += len(line)
        ends.append(offset)
    last = len(ends)
    lines = [*range(batch_size, last, batch_size), last]
    return [{"offset": ends[n - 1], "line": n} for n in lines]


def stored_count(job: ReindexJob) -> int:
    store = open_store("sqlite-vec", job.collection, 384)
    try:
        return store.count()
    finally:
        store.close()


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


class When:
    """Run `action` once `predicate` holds, from a thread of its own (with its own connection)."""

    def __init__(self, predicate: Callable[[], bool], action: Callable[[], None]) -> None:
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(predicate, action))
        self._thread.start()

    def _run(self, predicate: Callable[[], bool], action: Callable[[], None]) -> None:
        try:
            wait_until(predicate, timeout=30, interval=0.01, what="the moment to act")
            action()
            self.done.set()
        finally:
            connection.close()

    def join(self) -> None:
        self._thread.join()
        assert self.done.is_set(), "the action never ran"


def run_in_process(job: ReindexJob, stop: threading.Event | None = None) -> str:
    token = job.claim("w-pipe", lease_seconds=30)
    job.refresh_from_db()
    runner = JobRunner(
        job, token, "w-pipe", stop=stop or threading.Event(), options=EngineOptions()
    )
    return runner.run()


def test_pipelined_job__writes_every_document_once_and_commits_every_checkpoint_in_order(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
    engine_log: pytest.LogCaptureFixture,
) -> None:
    pipeline("on")
    corpus = make_corpus(95)
    job = make_job(corpus, batch_size=10, store="recording(sqlite-vec,15)", collection="ordered")
    run_burst_worker()
    job = row(job)
    assert job.status == JobStatus.COMPLETED, job.error
    assert (job.processed_docs, job.failed_docs, job.batches_done) == (95, 0, 10)
    assert event_kinds(job) == ["created", "claimed", "completed"]

    upserts = UPSERTS.pop("ordered")
    assert [len(u.ids) for u in upserts] == [10] * 9 + [5], "one upsert per batch"
    written = [doc_id for u in upserts for doc_id in u.ids]
    assert written == [f"doc-{i}" for i in range(95)], "each document once, in source order"
    # Batch k is written once batch k-1 committed its own checkpoint, never one read ahead.
    expected = checkpoints_of(corpus, 10)
    assert [u.committed for u in upserts] == [{}, *expected[:-1]]
    assert job.checkpoint == expected[-1]
    # The next batch was being read and embedded while each batch before the last was written.
    assert all(u.prefetching for u in upserts[:-1])
    assert any("pipelined (REINDEXER_PIPELINE=on)" in m for m in engine_log.messages)
    assert prefetch_threads() == []
    report = verify_job(job)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (95, 0, 0)


@pytest.mark.parametrize(
    ("setting", "store", "path"),
    [
        ("off", "recording(sqlite-vec,5)", "sequential (REINDEXER_PIPELINE=off)"),
        ("auto", "recording(sqlite-vec,5)", "sequential: the hashing embedder holds the GIL"),
        ("on", "recording(sqlite-vec,5)", "pipelined (REINDEXER_PIPELINE=on)"),
    ],
)
def test_reindexer_pipeline__chooses_the_path_a_job_takes(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
    engine_log: pytest.LogCaptureFixture,
    setting: str,
    store: str,
    path: str,
) -> None:
    pipeline(setting)
    job = make_job(make_corpus(40), batch_size=10, store=store, collection=f"path-{setting}")
    run_burst_worker()
    assert row(job).status == JobStatus.COMPLETED
    [line] = [m for m in engine_log.messages if m.startswith(f"job {job.pk}: ")]
    assert path in line
    upserts = UPSERTS.pop(f"path-{setting}")
    assert [u.prefetching for u in upserts][:-1] == [setting == "on"] * 3


def test_reindexer_pipeline_auto__pipelines_a_store_that_waits_on_io(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
    engine_log: pytest.LogCaptureFixture,
) -> None:
    pipeline("auto")
    job = make_job(make_corpus(30), batch_size=10, store="flaky(sqlite-vec,latency=5)")
    run_burst_worker()
    assert row(job).status == JobStatus.COMPLETED
    assert (
        f"job {job.pk}: pipelined: the store waits on I/O (its flaky latency of 5 ms)"
        in engine_log.messages
    )


def test_cancel__under_the_pipeline_stops_at_the_next_batch_boundary_and_leaves_no_thread(
    make_corpus: Corpus, make_job: MakeJob, pipeline: Callable[[str], None]
) -> None:
    pipeline("on")
    job = make_job(make_corpus(400), batch_size=10, store=SLOW_STORE)
    before = set(threading.enumerate())
    requested: list[int] = []

    def cancel() -> None:
        live = row(job)
        live.request_cancel("alice")
        requested.append(live.processed_docs)

    when = When(lambda: row(job).processed_docs >= 30, cancel)
    outcome = run_in_process(job)
    when.join()
    assert outcome == Outcome.CANCELLED
    job = row(job)
    assert job.status == JobStatus.CANCELLED
    assert requested[0] <= job.processed_docs <= requested[0] + job.batch_size
    assert job.processed_docs < 400
    # The batches read and embedded ahead were dropped, never written.
    assert stored_count(job) == job.processed_docs
    assert event_kinds(job)[-2:] == ["cancel_requested", "cancelled"]
    assert set(threading.enumerate()) == before


def test_stop__under_the_pipeline_hands_the_job_back_at_the_next_boundary_and_it_resumes(
    make_corpus: Corpus, make_job: MakeJob, run_burst_worker: Run, pipeline: Callable[[str], None]
) -> None:
    pipeline("on")
    corpus = make_corpus(300)
    job = make_job(corpus, batch_size=10, store=SLOW_STORE)
    stop = threading.Event()  # what the worker's SIGTERM handler sets
    before = set(threading.enumerate())
    when = When(lambda: row(job).processed_docs >= 30, stop.set)
    outcome = run_in_process(job, stop)
    when.join()
    assert outcome == Outcome.HANDED_BACK
    assert set(threading.enumerate()) == before
    handed = row(job)
    assert handed.status == JobStatus.PENDING
    assert 30 <= handed.processed_docs < 300
    batches = handed.processed_docs // 10
    assert handed.checkpoint == checkpoints_of(corpus, 10)[batches - 1]
    assert stored_count(handed) == handed.processed_docs

    run_burst_worker("w-next")
    done = row(job)
    assert done.status == JobStatus.COMPLETED
    assert (done.processed_docs, done.failed_docs, done.batches_done) == (300, 0, 30)
    report = verify_job(done)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (300, 0, 0)


def test_source_breaking_mid_read__under_the_pipeline_fails_the_job_with_its_cause(
    data_dir: Path, make_job: MakeJob, pipeline: Callable[[str], None]
) -> None:
    pipeline("on")
    root = data_dir / "notes"
    root.mkdir()
    for i in range(80):
        (root / f"n{i:03}.md").write_text(f"note number {i}")
    job = make_job("directory:notes", batch_size=5, store=SLOW_STORE, max_failed_ratio=1.0)
    before = set(threading.enumerate())

    def break_source() -> None:
        # The folder becomes a file: the reader's next open finds no folder there.
        shutil.rmtree(root)
        root.write_text("")

    when = When(lambda: row(job).processed_docs >= 15, break_source)
    outcome = run_in_process(job)
    when.join()
    assert outcome == Outcome.FAILED
    failed = row(job)
    assert failed.status == JobStatus.FAILED
    assert failed.error == f"SourceUnavailable: source folder is gone: {root}"
    assert 15 <= failed.processed_docs < 80
    assert stored_count(failed) == failed.processed_docs - failed.failed_docs
    assert event_kinds(failed)[-1] == "failed"
    assert set(threading.enumerate()) == before


def figures(job: ReindexJob) -> dict[str, Any]:
    """What a job ended with: its status, error, counters and failures (ids apart)."""
    fields = ["status", "error", "processed_docs", "failed_docs", "written_docs"]
    fields += ["batches_done", "batches_failed", "retries"]
    failures = BatchFailure.objects.filter(job=job).order_by("batch_number", "id")
    return {
        **{name: getattr(job, name) for name in fields},
        "failures": [
            (f.batch_number, f.doc_ids, f.error_type, f.message, f.attempts, f.transient)
            for f in failures
        ],
    }


@pytest.mark.parametrize(
    "store",
    [
        "flaky(sqlite-vec,transient=0.25,poison=doc-17,poison=doc-42,seed=7,latency=2)",
        "flaky(sqlite-vec,transient=1.0,latency=1)",
    ],
    ids=["poison-and-transient", "store-down"],
)
def test_faults__under_the_pipeline_end_exactly_as_in_the_sequential_path(
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
    store: str,
) -> None:
    corpus = make_corpus(120)
    ended = {}
    for setting in ("off", "on"):
        pipeline(setting)
        job = make_job(corpus, batch_size=16, max_failed_ratio=0.5, store=store, collection=setting)
        run_burst_worker(f"w-{setting}")
        ended[setting] = figures(row(job))
    assert ended["on"] == ended["off"]
    sequential = ended["off"]
    if "poison" in store:
        assert sequential["status"] == JobStatus.COMPLETED
        assert sequential["failed_docs"] == 2 and sequential["retries"] > 0
        assert {tuple(f[1]) for f in sequential["failures"]} == {("doc-17",), ("doc-42",)}
    else:
        assert sequential["status"] == JobStatus.FAILED
        assert sequential["error"].startswith("store unreachable:")
        assert sequential["retries"] > 0 and sequential["processed_docs"] == 0


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def batch_number(span: ReadableSpan) -> int:
    return int(attrs(span)["reindex.batch_number"])


def span_parent(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_span_id(span.context.span_id)


def test_tracing__pipelined_embeds_get_their_own_spans_under_the_job_span(
    span_exporter: InMemorySpanExporter,  # noqa: F811 - the fixture imported above
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
) -> None:
    pipeline("on")
    job = make_job(make_corpus(25), batch_size=10, store="flaky(sqlite-vec,poison=doc-12)")
    span_exporter.clear()
    run_burst_worker()
    assert row(job).status == JobStatus.COMPLETED
    spans = list(span_exporter.get_finished_spans())
    [job_span] = [s for s in spans if s.name == "reindex.job"]
    assert attrs(job_span)["reindex.pipelined"] is True
    for name in ("reindex.batch", "reindex.embed"):
        named = sorted((s for s in spans if s.name == name), key=batch_number)
        assert [batch_number(s) for s in named] == [1, 2, 3]
        assert [attrs(s)["reindex.batch_size"] for s in named] == [10, 10, 5]
        assert all(span_parent(s) == span_id(job_span) for s in named), name
    [batch_two] = [s for s in spans if s.name == "reindex.batch" and batch_number(s) == 2]
    assert attrs(batch_two)["reindex.failed"] == 1  # the store's poison
    span_exporter.clear()


@pytest.mark.slow
def test_crash__a_worker_killed_mid_pipeline_is_resumed_and_nothing_is_lost_or_doubled(
    make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(make_corpus(400), batch_size=10, store="flaky(sqlite-vec,latency=40)")
    env = {**FAST_LEASE, "REINDEXER_PIPELINE": "on"}
    first = processes.worker("w-doomed", env=env)
    wait_until(lambda: row(job).processed_docs >= 50, what="50 documents committed")
    os.kill(first.pid, signal.SIGKILL)
    code, _, err = finish(first)
    assert code == -signal.SIGKILL
    assert "pipelined (REINDEXER_PIPELINE=on)" in err
    crashed = row(job)
    assert crashed.status == JobStatus.RUNNING and 0 < crashed.processed_docs < 400
    # Past the checkpoint the store holds at most the batch being written: none read ahead.
    assert 0 <= stored_count(crashed) - crashed.processed_docs <= crashed.batch_size

    lease = timedelta(seconds=float(FAST_LEASE["REINDEXER_LEASE_SECONDS"]))
    wait_until(
        lambda: row(job).heartbeat_at < timezone.now() - lease,  # type: ignore[operator]
        timeout=10,
        what="the dead worker's lease to expire",
    )
    second = processes.worker("w-rescuer", env=env)
    code, _, err = finish(second, timeout=60)
    assert code == 0, err
    done = row(job)
    assert done.status == JobStatus.COMPLETED, done.error
    assert (done.processed_docs, done.failed_docs) == (400, 0)
    assert event_kinds(done)[-3:] == ["reclaimed", "checkpoint_resumed", "completed"]
    verify = processes.run("reindex", "verify", str(job.pk), "--json")
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert (report["source_docs"], report["in_store"], report["missing"], report["duplicates"]) == (
        400,
        400,
        0,
        0,
    )


def test_tracing__sequential_embeds_are_spans_inside_their_batch_span(
    span_exporter: InMemorySpanExporter,  # noqa: F811 - the fixture imported above
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Run,
    pipeline: Callable[[str], None],
) -> None:
    pipeline("off")
    job = make_job(make_corpus(25), batch_size=10)
    span_exporter.clear()
    run_burst_worker()
    assert row(job).status == JobStatus.COMPLETED
    spans = list(span_exporter.get_finished_spans())
    [job_span] = [s for s in spans if s.name == "reindex.job"]
    assert attrs(job_span)["reindex.pipelined"] is False
    batch_spans = {batch_number(s): s for s in spans if s.name == "reindex.batch"}
    embeds = {batch_number(s): s for s in spans if s.name == "reindex.embed"}
    assert sorted(embeds) == sorted(batch_spans) == [1, 2, 3]
    for number, embed in embeds.items():
        assert span_parent(embed) == span_id(batch_spans[number])
        assert attrs(batch_spans[number])["reindex.pipelined"] is False
    span_exporter.clear()
