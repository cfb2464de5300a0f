"""An incremental re-run over an unchanged corpus against the first full run, side by side.

    .venv/bin/python bench/incremental_rerun.py [--docs 50000] [--batch-size 200]

A JSONL corpus of `--docs` documents is generated in a temp dir; a real job (create_job + an
in-process burst worker, the hashing embedder, a fresh sqlite-vec collection, SQLite job
database) writes it all, then a second job with --mode incremental runs over the same,
unchanged corpus and skips every document. Both times are the jobs' wall clock from start to
finish (their started_at/finished_at), counting included. Target: a speed-up of at least 10x.
A third run, incremental with --cleanup full, shows what marking every record seen costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET = 10.0

from bench.support import setup_django, write_corpus  # noqa: E402


def run(
    corpus: Path,
    batch_size: int,
    mode: Literal["full", "incremental", "swap"],
    cleanup: Literal["none", "full"] = "none",
) -> tuple[float, int, int]:
    """One job over `corpus`: (seconds, written, skipped)."""
    from reindexer.jobs import create_job
    from reindexer.models import ReindexJob
    from reindexer.specs import JobSpec
    from reindexer.worker import Worker, WorkerOptions

    job = create_job(
        JobSpec(
            source=f"jsonl:{corpus.name}",
            embedder="hashing",
            store="sqlite-vec",
            collection="bench",
            batch_size=batch_size,
            mode=mode,
            cleanup=cleanup,
        )
    )
    Worker(WorkerOptions(worker_id="bench", burst=True)).run()
    job = ReindexJob.objects.get(pk=job.pk)
    if job.status != "completed" or job.started_at is None or job.finished_at is None:
        raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error}")
    seconds = (job.finished_at - job.started_at).total_seconds()
    return seconds, job.written_docs, job.skipped_docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        corpus = data_dir / "docs.jsonl"
        write_corpus(corpus, args.docs)
        first, written, _ = run(corpus, args.batch_size, "full")
        again, rewritten, skipped = run(corpus, args.batch_size, "incremental")
        seen, _, _ = run(corpus, args.batch_size, "incremental", cleanup="full")
    if written != args.docs or rewritten != 0 or skipped != args.docs:
        raise RuntimeError(f"unexpected counts: {written} written, then {rewritten}/{skipped}")
    ratio = first / again
    print(
        f"incremental re-run, {args.docs} unchanged docs, hashing + sqlite-vec,"
        f" batch {args.batch_size}"
    )
    print(f"  first full run:        {first:7.2f} s  ({args.docs / first:8.0f} docs/s)")
    print(f"  incremental re-run:    {again:7.2f} s  ({args.docs / again:8.0f} docs/s)")
    print(f"  speed-up:              {ratio:7.1f}x  (target >= {TARGET:g}x)")
    print(f"  with --cleanup full:   {seen:7.2f} s  ({first / seen:.1f}x; marks every record seen)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
