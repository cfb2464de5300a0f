"""Peak memory of a job against the size of its corpus: streaming keeps it flat (a benchmark).

    .venv/bin/python bench/memory.py [--small 2000] [--large 200000] [--batch-size 2000]

Each corpus is reindexed by a burst worker in a fresh process, on a throwaway SQLite database and
data dir; the figure is the difference between the two processes' peak RSS. The test
tests/integration/test_streaming_memory.py checks the same thing against a bound, without timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Runs one burst worker and reports that process's peak RSS in KiB (Linux's ru_maxrss unit).
PEAK_RSS_SCRIPT = """
import resource
import django
django.setup()
from django.core.management import call_command
call_command("reindex_worker", "--burst", "--worker-id", "memory-bench")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def setup_django(data_dir: Path) -> None:
    os.environ["REINDEXER_DATA_DIR"] = str(data_dir)
    os.environ["REINDEXER_SOURCE_ROOTS"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def write_corpus(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            # Short texts with a unique token each, so that per-document state would show.
            f.write(json.dumps({"id": f"d{i}", "text": f"w{i % 97} w{i % 89} t{i}"}) + "\n")


def peak_rss_kib(n: int, data_dir: Path, batch_size: int) -> tuple[int, float]:
    """Reindex a corpus of `n` documents in a fresh worker process: (peak RSS in KiB, seconds)."""
    from reindexer.jobs import create_job
    from reindexer.models import ReindexJob
    from reindexer.specs import JobSpec

    write_corpus(data_dir / f"corpus-{n}.jsonl", n)
    job = create_job(
        JobSpec(source=f"jsonl:corpus-{n}.jsonl", collection=f"mem{n}", batch_size=batch_size)
    )
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", PEAK_RSS_SCRIPT],
        env=os.environ.copy(),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the worker failed on {n} documents:\n{done.stderr}")
    job = ReindexJob.objects.get(pk=job.pk)
    if job.status != "completed" or job.processed_docs != n:
        sys.exit(f"job of {n} documents ended {job.status} at {job.processed_docs}: {job.error}")
    return int(done.stdout.strip().splitlines()[-1]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reindexer-bench-memory-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        peaks = {}
        for n in (args.small, args.large):
            peaks[n], seconds = peak_rss_kib(n, data_dir, args.batch_size)
            print(f"{n:>9,} documents: peak RSS {peaks[n] / 1024:.1f} MiB ({seconds:.1f} s)")
        growth = peaks[args.large] - peaks[args.small]
        print(
            f"peak RSS difference, {args.large:,} vs {args.small:,} documents: "
            f"{growth / 1024:+.1f} MiB (the test allows < 25 MiB)"
        )


if __name__ == "__main__":
    main()
