"""A full disk and a read-only store fail the job at once, naming the cause and the file, and blame
no document: a real 20 MB tmpfs, and a real worker without CAP_DAC_OVERRIDE."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reindexer.models import BatchFailure, EventKind, JobStatus, ReindexJob
from tests.integration.conftest import Processes, event_kinds, finish

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Corpus = Callable[..., Path]
MakeJob = Callable[..., ReindexJob]

# The worker keeps root's uid but loses the capabilities that let root ignore file modes.
WITHOUT_DAC_OVERRIDE = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
    "--",
]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "20m") -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `path`; unmounted afterwards, also on failure."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, (
        f"this test needs root to mount a tmpfs at {path}: {mounted.stderr.strip()}"
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def full_disk_stores(data_dir: Path) -> Iterator[Path]:
    """The data dir's `stores/` on a real 20 MB tmpfs."""
    with tmpfs(data_dir / "stores") as stores:
        yield stores


def test_full_disk__job_fails_at_once_naming_the_disk_and_the_file_with_no_failure_rows(
    full_disk_stores: Path,
    make_corpus: Corpus,
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
) -> None:
    # 50k documents take about 75 MB of vectors alone: far more than the 20 MB disk holds.
    job = make_job(make_corpus(50_000), collection="c", batch_size=500)
    run_burst_worker()
    job.refresh_from_db()
    store_file = full_disk_stores / "c.sqlite-vec"
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("store failed: disk full (FullError: database or disk is full)")
    assert job.error.endswith(f" at {store_file}")
    assert 0 < job.processed_docs < 50_000
    assert (job.failed_docs, job.batches_failed) == (0, 0)
    assert BatchFailure.objects.filter(job=job).count() == 0
    assert job.last_error == job.error and job.last_error_at is not None
    assert event_kinds(job)[-1] == EventKind.FAILED


def test_read_only_store__worker_without_dac_override_fails_the_job_at_once(
    data_dir: Path, make_corpus: Corpus, make_job: MakeJob, processes: Processes
) -> None:
    # A first job creates the store; then its file and folder become read-only.
    make_job(make_corpus(10, name="seed.jsonl"), collection="ro", batch_size=5)
    seeded = processes.worker("seeder")
    assert finish(seeded)[0] == 0
    stores = data_dir / "stores"
    store_file = stores / "ro.sqlite-vec"
    assert store_file.exists()
    job = make_job(make_corpus(2_000), collection="ro", batch_size=100)
    store_file.chmod(0o444)
    stores.chmod(0o555)
    try:
        worker = subprocess.Popen(
            [*WITHOUT_DAC_OVERRIDE, *processes.manage, "reindex_worker", "--burst"],
            env=processes.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.started.append(worker)  # killed at teardown if it hangs
        code, _, stderr = finish(worker)
    finally:
        stores.chmod(0o755)
        store_file.chmod(0o644)
    assert code == 0, stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED, stderr
    assert job.error == (
        "store failed: read only (ReadOnlyError: attempt to write a readonly database)"
        f" at {store_file}"
    )
    # The first batch failed the job: nothing processed, nothing bisected, no failure rows.
    assert (job.processed_docs, job.failed_docs, job.retries) == (0, 0, 0)
    assert BatchFailure.objects.filter(job=job).count() == 0


def test_full_disk__under_the_job_database_too_the_job_fails_once_and_the_worker_exits(
    tmp_path: Path, processes: Processes
) -> None:
    """The drill: the whole data dir (job database, corpus, stores) on one 20 MB tmpfs."""
    with tmpfs(tmp_path / "disk") as disk:
        env = {
            **processes.env,
            "REINDEXER_DATA_DIR": str(disk),
            "REINDEXER_SOURCE_ROOTS": str(disk),
            "DATABASE_URL": f"sqlite:///{disk / 'reindexer.sqlite3'}",
        }
        lines = (json.dumps({"id": f"d{i}", "text": f"document {i}"}) for i in range(50_000))
        (disk / "docs.jsonl").write_text("\n".join(lines) + "\n")
        drill = Processes(env, processes.manage)
        try:
            assert drill.run("migrate", "-v0").returncode == 0
            started = drill.run(
                "reindex", "start", "--source", "jsonl:docs.jsonl", "--batch-size", "500"
            )
            assert started.returncode == 0, started.stderr
            # A worker that took the full disk for a blink would loop here until killed.
            code, _, stderr = finish(drill.worker("drill"), timeout=120)
            assert code == 0, stderr
            shown = drill.run("reindex", "status", started.stdout.split()[-1], "--json")
        finally:
            drill.cleanup()
        status = json.loads(shown.stdout)
    assert status["status"] == "failed", status
    assert "disk full (" in status["error"] and f" at {disk}/" in status["error"]
    assert (status["failed_docs"], status["batches_failed"]) == (0, 0)
    assert 0 < status["processed_docs"] < 50_000
