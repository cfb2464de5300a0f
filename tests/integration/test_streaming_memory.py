"""A job streams its source: peak memory does not grow with the corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.models import JobStatus, ReindexJob

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Runs one burst worker in a fresh process and reports that process's peak RSS in KiB.
PEAK_RSS_SCRIPT = """
import resource
import django
django.setup()
from django.core.management import call_command
call_command("reindex_worker", "--burst", "--worker-id", "memory-probe")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
BATCH_SIZE = 2000
ALLOWED_GROWTH_KIB = 25 * 1024  # measured: ~9 MiB; the two leaks fixed were ~60 and ~30 MiB
WORKER_TIMEOUT_SECONDS = 1800


def write_corpus(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            # Short texts with a unique token each, so that per-document state would show.
            f.write(json.dumps({"id": f"d{i}", "text": f"w{i % 97} w{i % 89} t{i}"}) + "\n")


def peak_rss_kib(worker_env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT],
        env=worker_env,
        capture_output=True,
        text=True,
        # Generous: on a shared machine 200k documents may take minutes; the figure is in
        # `make bench` (bench/memory.py), this test only checks that memory stays flat.
        timeout=WORKER_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_streaming__peak_memory_of_200k_documents_stays_near_that_of_2k(
    data_dir: Path, make_job: Callable[..., ReindexJob], worker_env: dict[str, str]
) -> None:
    peaks = {}
    for n in (2_000, 200_000):
        write_corpus(data_dir / f"corpus-{n}.jsonl", n)
        job = make_job(f"jsonl:corpus-{n}.jsonl", batch_size=BATCH_SIZE, collection=f"mem{n}")
        peaks[n] = peak_rss_kib(worker_env)
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED, job.error
        assert job.processed_docs == n and job.failed_docs == 0
    growth = peaks[200_000] - peaks[2_000]
    assert growth < ALLOWED_GROWTH_KIB, f"peak RSS grew by {growth / 1024:.1f} MiB: {peaks}"
