"""The swap's window of unavailability: readers query an alias while a swap job rebuilds it.

    .venv/bin/python bench/swap_availability.py [--docs 5000] [--batch-size 200] [--readers 2]

A first swap job builds the alias from an `old-` corpus; then reader threads query the alias in
a loop (a search k=5 of a fixed text, and a count; one keeps its store open, the others open it
for every query) while a second swap job builds a `new-` corpus and moves the alias to it. Real
jobs (create_job + an in-process burst worker, the hashing embedder, SQLite job database).

Printed per store: the queries made, failed, empty and mixed (ids of both corpora in one result
set), and the longest gap between two successful queries of one reader, overall and around the
cutover (the 2 s before and after the alias moved). Target: 0 failed, 0 empty, 0 mixed. Runs on
sqlite-vec; on pgvector: the server at REINDEXER_PGVECTOR_URL, else one of its own started with
pgserver; and on Milvus: the server at REINDEXER_MILVUS_URI, else a milvus-lite server of its own
(tests/milvus_server.py). A server store that cannot be had is skipped, saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DIMS = 384
AROUND_SECONDS = 2.0

from bench.support import setup_django  # noqa: E402


class _Server(Protocol):
    url: str

    def stop(self) -> None: ...


@contextlib.contextmanager
def _server_url(
    name: str,
    setting: str,
    start: Callable[[Path], _Server],
    failures: tuple[type[BaseException], ...],
) -> Iterator[str | None]:
    """`setting`'s URL if set, else a server of our own (`start(folder)`), stopped at the end;
    None (`name` skipped, saying why) when neither can be had."""
    url = os.environ.get(setting)
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix=f"bench-swap-{name}-"))
    try:
        try:
            server = start(folder)
        except failures as exc:
            print(f"{name}: cannot start a server ({type(exc).__name__}: {exc}); skipped")  # noqa: T201
            yield None
            return
        try:
            yield server.url
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pgvector_url() -> contextlib.AbstractContextManager[str | None]:
    """REINDEXER_PGVECTOR_URL, else a PostgreSQL with pgvector of our own (pgserver)."""
    from tests.pgvector_server import PgvectorServer

    return _server_url("pgvector", "REINDEXER_PGVECTOR_URL", PgvectorServer, (Exception,))


def milvus_uri() -> contextlib.AbstractContextManager[str | None]:
    """REINDEXER_MILVUS_URI, else a milvus-lite server of our own."""
    import pytest

    from tests.milvus_server import MilvusServer

    # MilvusServer reports a server that would not start through pytest.fail.
    failures = (Exception, pytest.fail.Exception)
    return _server_url("milvus", "REINDEXER_MILVUS_URI", MilvusServer, failures)


def write_corpus(path: Path, prefix: str, docs: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(docs):
            text = f"{prefix} " + " ".join(f"w{i * 8 + k}" for k in range(8))
            f.write(json.dumps({"id": f"{prefix}-{i:06d}", "text": text}) + "\n")


@dataclass
class Tally:
    made: int = 0
    failed: int = 0
    empty: int = 0
    mixed: int = 0
    ok_at: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def reader(store: str, alias: str, keep_open: bool, tally: Tally, stop: threading.Event) -> None:
    from reindexer.embedders.hashing import HashingEmbedder
    from reindexer.stores import store_backend

    backend = store_backend(store)
    vector = HashingEmbedder(DIMS).embed(["w8 w9 w10 a fixed query"])[0]
    kept = backend.open(alias, DIMS) if keep_open else None
    while not stop.is_set():
        tally.made += 1
        try:
            opened = kept or backend.open(alias, DIMS)
            try:
                hits = opened.search(vector, k=5)
                opened.count()
            finally:
                if kept is None:
                    opened.close()
        except Exception as exc:  # noqa: BLE001 - what the bench counts
            tally.failed += 1
            if len(tally.errors) < 3:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        prefixes = {hit.id.split("-", 1)[0] for hit in hits}
        if not hits:
            tally.empty += 1
        elif len(prefixes) != 1:
            tally.mixed += 1
        else:
            tally.ok_at.append(time.monotonic())
    if kept is not None:
        kept.close()


def run_swap(corpus: Path, store: str, alias: str, batch_size: int) -> Any:
    from reindexer.jobs import create_job
    from reindexer.models import ReindexJob
    from reindexer.specs import JobSpec
    from reindexer.worker import Worker, WorkerOptions

    job = create_job(
        JobSpec(
            source=f"jsonl:{corpus.name}",
            store=store,
            collection=alias,
            batch_size=batch_size,
            mode="swap",
        )
    )
    Worker(WorkerOptions(worker_id="bench-swap", burst=True, poll_seconds=0.05)).run()
    job = ReindexJob.objects.get(pk=job.pk)
    if job.status != "completed":
        raise SystemExit(f"swap job {job.pk} ended {job.status}: {job.error}")
    return job


def longest_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    return max((b - a for a, b in zip(inside, inside[1:], strict=False)), default=0.0)


def bench(store: str, data_dir: Path, docs: int, batch_size: int, readers: int) -> None:
    from reindexer.models import EventKind, JobEvent

    alias = f"avail_{uuid.uuid4().hex[:8]}"
    old, new = data_dir / f"old-{alias}.jsonl", data_dir / f"new-{alias}.jsonl"
    write_corpus(old, "old", docs)
    write_corpus(new, "new", docs)
    run_swap(old, store, alias, batch_size)

    stop = threading.Event()
    tallies = [Tally() for _ in range(readers)]
    threads = [
        threading.Thread(target=reader, args=(store, alias, i == 0, t, stop), daemon=True)
        for i, t in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    job = run_swap(new, store, alias, batch_size)
    job_seconds = time.monotonic() - began
    # When the alias moved, on the monotonic clock: the SWAPPED event's age, now.
    swapped = JobEvent.objects.get(job=job, kind=EventKind.SWAPPED).at
    from django.utils import timezone

    moved = time.monotonic() - (timezone.now() - swapped).total_seconds()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)

    made = sum(t.made for t in tallies)
    gap = max(longest_gap(t.ok_at, began, moved + 0.5) for t in tallies)
    around = max(
        longest_gap(t.ok_at, moved - AROUND_SECONDS, moved + AROUND_SECONDS) for t in tallies
    )
    print(  # noqa: T201
        f"{store}: {docs} docs, swap job {job_seconds:.2f} s, {readers} readers:"
        f" queries {made}, failed {sum(t.failed for t in tallies)},"
        f" empty {sum(t.empty for t in tallies)}, mixed {sum(t.mixed for t in tallies)};"
        f" longest gap between successful queries {gap * 1000:.1f} ms"
        f" (around the cutover {around * 1000:.1f} ms)"
    )
    for t in tallies:
        for error in t.errors:
            print(f"  error: {error}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp,
        pgvector_url() as url,
        milvus_uri() as uri,
    ):
        data_dir = Path(tmp)
        if url is not None:
            os.environ["REINDEXER_PGVECTOR_URL"] = url
        if uri is not None:
            os.environ["REINDEXER_MILVUS_URI"] = uri
        setup_django(data_dir)
        bench("sqlite-vec", data_dir, args.docs, args.batch_size, args.readers)
        if url is not None:
            bench("pgvector", data_dir, args.docs, args.batch_size, args.readers)
        if uri is not None:
            bench("milvus", data_dir, args.docs, args.batch_size, args.readers)


if __name__ == "__main__":
    main()
