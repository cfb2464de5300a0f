"""Pipelined against sequential: one worker, one job at a time, on a store with 20 ms of latency.

    .venv/bin/python bench/pipeline.py [--minilm-docs 400] [--hashing-docs 10000] [--rounds 5]

For each embedder (minilm, the target; hashing, which holds the GIL) the same corpus is indexed
by a real job (create_job + an in-process burst worker, a fresh sqlite-vec collection behind
`flaky(sqlite-vec,latency=20)`) with REINDEXER_PIPELINE=off, then =on, in each round.

Per batch, from the sequential job of the same round: the embed time (its `reindex.embed`
spans) and the write time (the rest of its writing phase per batch: upsert with its latency,
checkpoint commit, reading). A worker can go no faster than `1 / max(embed, write)` per batch:
the limit that the pipelined job's throughput is held against (target >= 0.9 with minilm); the
sequential job's own bound is `1 / (embed + write)`. Throughput is the job's writing phase (its
JobPhase row), so the model load and the job's start are left out. Means, not medians: the
corpus mixes short and long texts, and the total time is what the limit bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STORE = "flaky(sqlite-vec,latency=20)"
TARGET = 0.9


def setup_django(data_dir: Path) -> None:
    os.environ["REINDEXER_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("REINDEXER_PIPELINE", None)
    import django

    django.setup()
    logging.getLogger("reindexer").setLevel(logging.WARNING)  # no per-job lines in the figures
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def install_span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's SDK tracer provider (set before any job runs)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def write_corpus(data_dir: Path, name: str, n: int) -> Path:
    from reindexer.demo import write_demo_corpus

    demo, _, _ = write_demo_corpus(data_dir / "demo")
    texts = [json.loads(line)["text"] for line in demo.open(encoding="utf-8")]
    path = data_dir / name
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            doc = {"id": f"doc-{i}", "text": f"{texts[i % len(texts)]} ({i})", "metadata": {"i": i}}
            out.write(json.dumps(doc) + "\n")
    return path


@dataclass(frozen=True)
class Run:
    docs: int
    batches: int
    writing: float  # seconds of the writing phase
    embed: float  # mean reindex.embed span, seconds
    batch: float  # mean reindex.batch span: write (pipelined), or embed + write (sequential)

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.writing

    @property
    def write(self) -> float:
        """Per batch, what is not embedding: meaningful for a sequential run."""
        return self.writing / self.batches - self.embed

    def limit(self) -> float:
        """docs/s at 1 / max(embed, write) per batch, from this (sequential) run's figures."""
        return self.docs / (self.batches * max(self.embed, self.write))

    def own_limit(self) -> float:
        """docs/s at 1 / max(embed, write) from a pipelined run's own spans (contention in)."""
        return self.docs / (self.batches * max(self.embed, self.batch))

    def sequential_bound(self) -> float:
        return self.docs / (self.batches * (self.embed + self.write))


def run_job(
    exporter: InMemorySpanExporter,
    corpus: Path,
    embedder: str,
    size: int,
    collection: str,
    pipeline: str,
) -> Run:
    from django.conf import settings

    from reindexer.jobs import create_job
    from reindexer.models import JobPhase, Phase, ReindexJob
    from reindexer.specs import JobSpec
    from reindexer.worker import Worker, WorkerOptions

    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pipeline=pipeline)
    exporter.clear()
    job = create_job(
        JobSpec(
            source=f"jsonl:{corpus.name}",
            embedder=embedder,
            store=STORE,
            collection=collection,
            batch_size=size,
        )
    )
    Worker(WorkerOptions(worker_id="bench", burst=True)).run()
    job = ReindexJob.objects.get(pk=job.pk)
    if job.status != "completed" or job.written_docs != job.total_docs:
        raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error}")
    writing = JobPhase.objects.get(job=job, name=Phase.WRITING).duration_seconds(job.finished_at)
    spans = exporter.get_finished_spans()

    def mean_of(name: str) -> float:
        times = [
            (s.end_time - s.start_time) / 1e9
            for s in spans
            if s.name == name and s.end_time is not None and s.start_time is not None
        ]
        return statistics.fmean(times) if times else 0.0

    [job_span] = [s for s in spans if s.name == "reindex.job"]
    if (job_span.attributes or {}).get("reindex.pipelined") != (pipeline == "on"):
        raise RuntimeError(f"job {job.pk} took the wrong path for REINDEXER_PIPELINE={pipeline}")
    total = job.total_docs or 0
    return Run(total, job.batches_done, writing, mean_of("reindex.embed"), mean_of("reindex.batch"))


def compare(
    exporter: InMemorySpanExporter,
    label: str,
    corpus: Path,
    docs: int,
    embedder: str,
    size: int,
    rounds: int,
) -> float:
    ms = 1000.0
    pairs: list[tuple[Run, Run]] = []
    for r in range(rounds):
        seq, pipe = (
            run_job(exporter, corpus, embedder, size, f"bench_{embedder}_{mode}_{r}", mode)
            for mode in ("off", "on")
        )
        pairs.append((seq, pipe))
        print(
            f"  round {r + 1}: embed {seq.embed * ms:.1f} ms, write {seq.write * ms:.1f} ms per "
            f"batch; limit {seq.limit():,.0f} docs/s; sequential {seq.docs_per_second:,.0f}, "
            f"pipelined {pipe.docs_per_second:,.0f} docs/s, "
            f"ratio {pipe.docs_per_second / seq.limit():.3f}",
            flush=True,
        )
    ratios = [pipe.docs_per_second / seq.limit() for seq, pipe in pairs]
    seq, pipe = pairs[ratios.index(statistics.median_high(ratios))]
    ratio = pipe.docs_per_second / seq.limit()
    verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
    print(f"{label}: {docs:,} documents, batch {size}, {embedder} + {STORE}, median of {rounds}")
    print(
        f"  per batch (sequential job): embed {seq.embed * ms:.1f} ms, "
        f"write {seq.write * ms:.1f} ms"
    )
    print(f"  limit 1/max(embed, write)         {seq.limit():8,.0f} docs/s")
    print(f"  sequential bound 1/(embed+write)  {seq.sequential_bound():8,.0f} docs/s")
    print(
        f"  sequential job  {seq.docs_per_second:8,.0f} docs/s  "
        f"ratio to limit {seq.docs_per_second / seq.limit():.3f}"
    )
    print(
        f"  pipelined job   {pipe.docs_per_second:8,.0f} docs/s  ratio to limit {ratio:.3f}  "
        f"{verdict}"
    )
    print(
        f"  pipelined job's own spans: embed {pipe.embed * ms:.1f} ms, write {pipe.batch * ms:.1f}"
        f" ms per batch; ratio to that limit {pipe.docs_per_second / pipe.own_limit():.3f}"
    )
    print(f"  pipelined/sequential {pipe.docs_per_second / seq.docs_per_second:.2f}x", flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minilm-docs", type=int, default=400, help="0: no minilm run")
    parser.add_argument("--minilm-batch", type=int, default=8)
    parser.add_argument("--hashing-docs", type=int, default=10_000, help="0: no hashing run")
    parser.add_argument("--hashing-batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-pipeline-") as name:
        data = Path(name) / "data"
        data.mkdir()
        exporter = install_span_exporter()
        setup_django(data)
        started = time.perf_counter()
        plans = [
            ("minilm", "minilm", args.minilm_docs, args.minilm_batch),
            ("hashing", "hashing", args.hashing_docs, args.hashing_batch),
        ]
        for label, embedder, docs, size in plans:
            if docs:
                corpus = write_corpus(data, f"{label}.jsonl", docs)
                compare(exporter, label, corpus, docs, embedder, size, args.rounds)
        print(f"whole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
