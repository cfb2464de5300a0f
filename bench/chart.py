"""The rate chart's render time for a job of 200k documents (a bench).

    .venv/bin/python bench/chart.py [--docs 200000] [--repeat 50]

Two jobs of `--docs` documents on a throwaway SQLite database:
- a real run: queued with `reindex start` and run by `reindex_worker --burst` in this process
  (hashing embedder, sqlite-vec store), whose sampler records the series as it goes;
- a long run: the same size at 25 docs/s (over two hours), its commits fed to the real sampler
  with failures and retries along the way, thinned as any long job's series is.
For each: the samples kept, the chart's render time (`partials.render_chart`: the query, the
geometry and the template; median and p95 of `--repeat`), and its share of the detail page's
whole response time, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def setup_django(data_dir: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=str(data_dir),
        DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def write_corpus(path: Path, docs: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(docs):
            f.write(json.dumps({"id": f"doc-{i}", "text": f"document {i} about vectors"}) + "\n")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and p95 of `repeat` calls, in milliseconds."""
    fn()  # warm the template cache
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    runs.sort()
    return statistics.median(runs), runs[max(0, int(len(runs) * 0.95) - 1)]


def real_run(docs: int) -> int:
    from django.core.management import call_command

    from reindexer.jobs import create_job
    from reindexer.specs import JobSpec

    job = create_job(JobSpec(source="jsonl:corpus.jsonl", collection="bench", name="bench run"))
    started = time.perf_counter()
    call_command("reindex_worker", burst=True, worker_id="bench")
    print(f"real run: {docs:,} documents in {time.perf_counter() - started:.1f} s")
    return job.pk


def long_run(docs: int) -> int:
    """A completed job whose series the real sampler recorded over a simulated slow run."""
    from django.utils import timezone

    from reindexer.jobs import create_job
    from reindexer.models import JobSample, JobStatus, ReindexJob
    from reindexer.samples import JobSampler
    from reindexer.specs import JobSpec

    job = create_job(JobSpec(source="jsonl:corpus.jsonl", collection="long", name="long run"))
    batch, per_second = 50, 25
    seconds_per_batch = batch / per_second
    start = timezone.now() - timedelta(seconds=docs / per_second)
    sampler = JobSampler(job, now=start)
    at = start
    for n in range(1, docs // batch + 1):
        at = start + timedelta(seconds=n * seconds_per_batch)
        job.processed_docs += batch
        job.failed_docs += 1 if n % 700 == 0 else 0
        job.retries += 2 if n % 300 == 0 else 0
        sampler.note(job, now=at)
    ReindexJob.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED,
        total_docs=docs,
        processed_docs=job.processed_docs,
        failed_docs=job.failed_docs,
        retries=job.retries,
        started_at=start,
        finished_at=at,
        heartbeat_at=at,
    )
    kept = JobSample.objects.filter(job_id=job.pk).count()
    print(f"long run: {docs // batch:,} commits over {docs / per_second / 3600:.1f} h")
    print(f"long run: {kept} samples kept")
    return job.pk


def measure(label: str, job_id: int, repeat: int) -> None:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    from dashboard.partials import render_chart
    from reindexer.models import JobSample, ReindexJob

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client = Client()
    client.force_login(user)

    def chart() -> object:
        return render_chart(ReindexJob.objects.get(pk=job_id))

    def page() -> object:
        response = client.get(f"/jobs/{job_id}/", HTTP_HOST="localhost")
        if response.status_code != 200:
            raise RuntimeError(f"the detail page answered {response.status_code}")
        return response

    samples = JobSample.objects.filter(job_id=job_id).count()
    chart_median, chart_p95 = timed(chart, repeat)
    page_median, page_p95 = timed(page, repeat)
    print(
        f"{label}: {samples} samples; chart {chart_median:.2f} ms median, {chart_p95:.2f} ms p95; "
        f"detail page {page_median:.2f} ms median, {page_p95:.2f} ms p95; "
        f"chart / page = {chart_median / page_median:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        write_corpus(data_dir / "corpus.jsonl", args.docs)
        real = real_run(args.docs)
        long = long_run(args.docs)
        measure("real run", real, args.repeat)
        measure("long run", long, args.repeat)


if __name__ == "__main__":
    main()
