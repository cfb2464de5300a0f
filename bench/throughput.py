"""Tracked vs bare throughput: the cost of running a reindex as a tracked, resumable job.

Same corpus (>= 50k documents), same embedder, same batch size, same kind of store (fresh
sqlite-vec collections). Rounds alternate bare and tracked so that machine noise hits both;
the ratio of the medians is the figure to report.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def setup_django(data_dir: Path) -> None:
    os.environ["REINDEXER_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def write_corpus(data_dir: Path, n: int) -> Path:
    from reindexer.demo import write_demo_corpus

    demo, _, _ = write_demo_corpus(data_dir / "demo")
    texts = [json.loads(line)["text"] for line in demo.open(encoding="utf-8")]
    path = data_dir / "bench.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            doc = {"id": f"doc-{i}", "text": f"{texts[i % len(texts)]} ({i})", "metadata": {"i": i}}
            out.write(json.dumps(doc) + "\n")
    return path


def level_start() -> None:
    """Both contenders start alike: the embedder's feature-hash cache empty, no garbage pending."""
    from reindexer.embedders.hashing import _bucket

    _bucket.cache_clear()
    gc.collect()


def bare(corpus: Path, data_dir: Path, collection: str, batch_size: int) -> float:
    """Embed and upsert with no tracking: the floor any job runner is measured against."""
    from reindexer.documents import Document
    from reindexer.embedders.hashing import HashingEmbedder
    from reindexer.stores.sqlite_vec import SqliteVecStore

    embedder = HashingEmbedder()
    store = SqliteVecStore.for_collection(data_dir, collection, embedder.dimensions)
    start = time.perf_counter()
    batch: list[Document] = []
    with corpus.open("rb") as f:
        for line in f:
            d = json.loads(line)
            batch.append(Document(d["id"], d["text"], d.get("metadata", {})))
            if len(batch) == batch_size:
                store.upsert(batch, embedder.embed([doc.text for doc in batch]))
                batch = []
    if batch:
        store.upsert(batch, embedder.embed([doc.text for doc in batch]))
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def tracked(corpus: Path, collection: str, batch_size: int) -> float:
    """The same work as a job: queued, claimed and run by the worker, checkpointed per batch."""
    from reindexer.jobs import create_job
    from reindexer.models import ReindexJob
    from reindexer.specs import JobSpec
    from reindexer.worker import Worker, WorkerOptions

    job = create_job(
        JobSpec(source=f"jsonl:{corpus.name}", collection=collection, batch_size=batch_size)
    )
    start = time.perf_counter()
    Worker(WorkerOptions(worker_id="bench", burst=True)).run()
    elapsed = time.perf_counter() - start
    job = ReindexJob.objects.get(pk=job.pk)
    assert job.status == "completed" and job.written_docs == job.total_docs, job.status  # noqa: S101
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        corpus = write_corpus(data_dir, args.docs)
        bare_times: list[float] = []
        tracked_times: list[float] = []
        for r in range(args.rounds):
            level_start()
            bare_times.append(bare(corpus, data_dir, f"bare-{r}", args.batch_size))
            level_start()
            tracked_times.append(tracked(corpus, f"tracked-{r}", args.batch_size))
            print(
                f"round {r + 1}: bare {args.docs / bare_times[-1]:,.0f} docs/s, "
                f"tracked {args.docs / tracked_times[-1]:,.0f} docs/s"
            )
        bare_rate = args.docs / statistics.median(bare_times)
        tracked_rate = args.docs / statistics.median(tracked_times)
        # Each round's pair ran back to back, so its ratio shares the machine's mood of the moment.
        ratios = [b / t for b, t in zip(bare_times, tracked_times, strict=True)]
        print(f"corpus: {args.docs} documents, batch size {args.batch_size}, hashing + sqlite-vec")
        print(f"bare loop:   {bare_rate:,.0f} docs/s (median of {args.rounds})")
        print(f"tracked job: {tracked_rate:,.0f} docs/s (median of {args.rounds})")
        print(f"tracked/bare ratio per round: {', '.join(f'{r:.3f}' for r in ratios)}")
        ratio = statistics.median(ratios)
        print(f"tracked/bare ratio: {ratio:.3f} (median of the rounds; target >= 0.95)")


if __name__ == "__main__":
    main()
