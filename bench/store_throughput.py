"""Tracked vs bare throughput on every store: sqlite-vec, pgvector, milvus (and minilm's rate).

    .venv/bin/python bench/store_throughput.py [--docs 50000] [--batch-size 500] [--rounds 2]

Per store: the bare loop (read the JSONL corpus, batch, `embed` + `upsert` into a fresh
collection, nothing else) against a real job (create_job + an in-process burst worker, fresh
collection). pgvector runs in a pgserver and Milvus in a `milvus-lite server`, both started here
in a temp dir. Rounds interleave bare and tracked and the best of each is kept (noisy machine).

The job also builds the store's search index after the last batch (pgvector's HNSW), which the
bare loop does not: the ratio leaves that indexing phase out, and its time is printed apart.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.milvus_server import MilvusServer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET = 0.95


@dataclass(frozen=True)
class Tracked:
    """One job's wall times, in seconds, from its own timestamps and JobPhase rows."""

    job: float  # claim (started_at) to completed (finished_at)
    writing: float  # the writing phase alone: batches embedded, upserted and checkpointed
    indexing: float  # the indexing phase (0 when the store builds no index)

    @property
    def without_index(self) -> float:
        return self.job - self.indexing


def setup_django(data_dir: Path, env: dict[str, str]) -> None:
    # Settings are read from the environment once, so the servers' URLs go in before setup.
    os.environ.update(env)
    os.environ["REINDEXER_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    logging.getLogger("reindexer").setLevel(logging.WARNING)  # no per-job lines in the figures
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


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


def level_start() -> None:
    """Both contenders start alike: the embedder's feature-hash cache empty, no garbage pending."""
    from reindexer.embedders.hashing import _bucket

    _bucket.cache_clear()
    gc.collect()


def bare(corpus: Path, store_spec: str, embedder_spec: str, collection: str, size: int) -> float:
    """Embed and upsert with no tracking and no index build: the floor a job is measured against.

    The embedder and the store are opened before the clock starts (a job opens them too, but
    minilm's model load would swamp the figure); the tracked job's figure includes its opens.
    """
    from reindexer.documents import Document
    from reindexer.embedders import open_embedder
    from reindexer.sources import open_source
    from reindexer.stores import open_store

    embedder = open_embedder(embedder_spec)
    store = open_store(store_spec, collection, embedder.dimensions)
    # The job's own reader: the two differ by the tracking alone, not by how they parse JSONL.
    reader = open_source(f"jsonl:{corpus.name}").open()
    try:
        start = time.perf_counter()
        while records := reader.read_batch(size):
            docs = [r for r in records if isinstance(r, Document)]
            store.upsert(docs, embedder.embed([doc.text for doc in docs]))
        return time.perf_counter() - start
    finally:
        reader.close()
        store.close()


def tracked(
    corpus: Path, store_spec: str, embedder_spec: str, collection: str, size: int
) -> Tracked:
    """The same work as a job: queued, claimed and run by an in-process burst worker."""
    from reindexer.jobs import create_job
    from reindexer.models import JobPhase, Phase, ReindexJob
    from reindexer.specs import JobSpec
    from reindexer.worker import Worker, WorkerOptions

    job = create_job(
        JobSpec(
            source=f"jsonl:{corpus.name}",
            embedder=embedder_spec,
            store=store_spec,
            collection=collection,
            batch_size=size,
        )
    )
    Worker(WorkerOptions(worker_id="bench", burst=True)).run()
    job = ReindexJob.objects.get(pk=job.pk)
    if job.status != "completed" or job.written_docs != job.total_docs:
        raise RuntimeError(f"{store_spec}: job {job.pk} ended {job.status}: {job.error}")
    assert job.started_at is not None and job.finished_at is not None  # noqa: S101 - completed
    phases = {p.name: p for p in JobPhase.objects.filter(job=job)}
    indexing = phases.get(Phase.INDEXING)
    return Tracked(
        job=(job.finished_at - job.started_at).total_seconds(),
        writing=phases[Phase.WRITING].duration_seconds(job.finished_at),
        indexing=indexing.duration_seconds(job.finished_at) if indexing else 0.0,
    )


def compare(
    servers: Servers,
    label: str,
    corpus: Path,
    docs: int,
    store: str,
    embedder: str,
    size: int,
    rounds: int,
) -> None:
    bare_times: list[float] = []
    runs: list[Tracked] = []
    slug = store.replace("-", "_")
    for r in range(rounds):
        servers.fresh(store)
        level_start()
        bare_times.append(bare(corpus, store, embedder, f"bench_{slug}_{embedder}_bare_{r}", size))
        servers.fresh(store)
        level_start()
        runs.append(tracked(corpus, store, embedder, f"bench_{slug}_{embedder}_job_{r}", size))
        print(
            f"  round {r + 1}: bare {docs / bare_times[-1]:,.0f} docs/s, tracked (less index) "
            f"{docs / runs[-1].without_index:,.0f} docs/s, index {runs[-1].indexing:.1f} s",
            flush=True,
        )
    best_bare = docs / min(bare_times)
    best_job = docs / min(t.without_index for t in runs)
    best_writing = docs / min(t.writing for t in runs)
    index = min(t.indexing for t in runs)
    ratio = best_job / best_bare
    verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
    print(f"{label}: {docs:,} documents, batch {size}, {embedder} + {store}, best of {rounds}")
    print(f"  bare loop (read + embed + upsert)          {best_bare:8,.0f} docs/s")
    print(f"  tracked job, claim to completed less index {best_job:8,.0f} docs/s")
    print(f"  tracked job, writing phase alone           {best_writing:8,.0f} docs/s")
    print(f"  ratio tracked/bare  {ratio:.3f}  {verdict}")
    print(f"  ratio writing/bare  {best_writing / best_bare:.3f}")
    print(f"  index build (indexing phase, apart)  {index:.1f} s", flush=True)


class Servers:
    """The servers the chosen stores need (a pgserver, a milvus-lite server), in `tmp`."""

    def __init__(self, tmp: Path, stores: list[str]) -> None:
        self.env: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self.milvus: MilvusServer | None = None
        self.pgvector_url: str | None = None
        if "pgvector" in stores:
            from tests.pgvector_server import PgvectorServer

            pg = PgvectorServer(tmp / "pg")
            self._stack.callback(pg.stop)
            self.env["REINDEXER_PGVECTOR_URL"] = self.pgvector_url = pg.url
        if "milvus" in stores:
            from tests.milvus_server import MilvusServer

            self.milvus = MilvusServer(tmp / "milvus")
            self._stack.callback(self.milvus.stop)
            self.env["REINDEXER_MILVUS_URI"] = self.milvus.url

    def fresh(self, store: str) -> None:
        """Before each run: milvus-lite slows down as collections pile up (measured here: 4.7k
        docs/s into the first, 0.5-0.7k into the next ones, dropped or not, as it seals and
        compacts the earlier ones in the background), so each run gets an empty server."""
        if store == "milvus" and self.milvus is not None:
            self.milvus.stop()
            shutil.rmtree(self.milvus.data_dir, ignore_errors=True)
            self.milvus.restart()
        if store == "pgvector" and self.pgvector_url is not None:
            # The run before leaves dirty pages and an HNSW index behind: drop its tables and
            # checkpoint, so that neither contender pays for the other's writes.
            import psycopg

            with psycopg.connect(self.pgvector_url, autocommit=True) as conn:
                tables = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_%'"
                ).fetchall()
                for (table,) in tables:
                    conn.execute(f'DROP TABLE "{table}"')
                conn.execute("CHECKPOINT")

    def close(self) -> None:
        self._stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minilm-docs", type=int, default=2_000, help="0: no minilm run")
    parser.add_argument("--stores", default="sqlite-vec,pgvector,milvus")
    args = parser.parse_args()
    stores = args.stores.split(",")
    # gRPC's C core logs keepalive chatter with milvus-lite ("too_many_pings") amid the figures.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-stores-") as name:
        tmp = Path(name)
        started = time.perf_counter()
        running = Servers(tmp, stores)
        failed: list[str] = []
        try:
            print(f"servers up in {time.perf_counter() - started:.1f} s", flush=True)
            setup_django(tmp / "data", running.env)
            data = tmp / "data"
            corpus = write_corpus(data, "bench.jsonl", args.docs)
            small = write_corpus(data, "minilm.jsonl", args.minilm_docs)
            runs = [(store, corpus, args.docs, store, "hashing") for store in stores]
            if args.minilm_docs:
                runs.append(("minilm", small, args.minilm_docs, "sqlite-vec", "minilm"))
            for label, docs_file, docs, store, embedder in runs:
                try:
                    compare(
                        running,
                        label,
                        docs_file,
                        docs,
                        store,
                        embedder,
                        args.batch_size,
                        args.rounds,
                    )
                except Exception as exc:  # noqa: BLE001 - one store down must not hide the rest
                    failed.append(label)
                    print(f"{label}: NOT MEASURED: {type(exc).__name__}: {exc}", flush=True)
        finally:
            running.close()
        print(f"whole bench: {time.perf_counter() - started:.0f} s")
        if failed:
            raise SystemExit(f"not measured: {', '.join(failed)}")


if __name__ == "__main__":
    main()
