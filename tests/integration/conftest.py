"""Fixtures for the integration tests: in-process workers and worker subprocesses.

Jobs come from the shared `make_job` factory in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from reindexer.models import JobEvent, ReindexJob

WAIT_SECONDS = 30.0
LEASE = 30.0


def snapshot(job: ReindexJob) -> dict[str, Any]:
    """Every column of the job's row, as stored."""
    return dict(ReindexJob.objects.filter(pk=job.pk).values().get())


@pytest.fixture
def pending(make_corpus: Callable[..., Path], make_job: Callable[..., ReindexJob]) -> ReindexJob:
    return make_job(make_corpus(5))


def claimed(job: ReindexJob, worker: str = "w1") -> uuid.UUID:
    return job.claim(worker, lease_seconds=LEASE)


@pytest.fixture
def run_burst_worker() -> Callable[..., None]:
    """Run `reindex_worker --burst` in this process until nothing is left to claim."""

    def run(worker_id: str = "test-worker") -> None:
        call_command("reindex_worker", "--burst", "--worker-id", worker_id)

    return run


def event_kinds(job: ReindexJob) -> list[str]:
    return list(
        JobEvent.objects.filter(job=job).order_by("at", "id").values_list("kind", flat=True)
    )


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = WAIT_SECONDS,
    interval: float = 0.05,
    what: str,
) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Processes:
    """Subprocesses started by one test; whatever is still alive at teardown is killed."""

    def __init__(self, env: dict[str, str], manage: list[str]) -> None:
        self.env = env
        self.manage = manage
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*self.manage, *argv],
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def worker(
        self, worker_id: str, *, burst: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        argv = ["reindex_worker", "--worker-id", worker_id] + (["--burst"] if burst else [])
        return self.start(*argv, env=env)

    def run(self, *argv: str, timeout: float = WAIT_SECONDS) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.manage, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)


@pytest.fixture
def processes(worker_env: dict[str, str], manage: list[str]) -> Iterator[Processes]:
    procs = Processes(worker_env, manage)
    try:
        yield procs
    finally:
        procs.cleanup()


def wait_for_output(proc: subprocess.Popen[str], text: str, timeout: float = WAIT_SECONDS) -> str:
    """Read `proc`'s stderr until `text` appears; what was read. Never blocks past `timeout`."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out waiting for {text!r} from the subprocess; got {seen!r}"
            )
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"subprocess ended before printing {text!r}; got {seen!r}")
            seen += chunk
    return seen.decode(errors="replace")


def finish(proc: subprocess.Popen[str], timeout: float = WAIT_SECONDS) -> tuple[int, str, str]:
    """Wait for `proc` to exit; its exit code, stdout and stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
