"""Helpers for the tests of many workers: a fleet of worker subprocesses, rows, events, verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from reindexer.models import JobEvent, ReindexJob
from reindexer.verify import verify_job
from tests.integration.conftest import Processes, finish

SKEWED_CLOCK = Path(__file__).resolve().parent.parent / "skewed_clock.py"


def row(job: ReindexJob | int) -> ReindexJob:
    return ReindexJob.objects.get(pk=job if isinstance(job, int) else job.pk)


def slices_of(parent: ReindexJob) -> list[ReindexJob]:
    return list(ReindexJob.objects.filter(parent=parent).order_by("slice_number"))


def events(job: ReindexJob, kind: str | None = None) -> list[JobEvent]:
    found = JobEvent.objects.filter(job_id=job.pk).order_by("id")
    return list(found if kind is None else found.filter(kind=kind))


def kinds(job: ReindexJob) -> list[str]:
    return [event.kind for event in events(job)]


def clean(job: ReindexJob) -> dict[str, Any]:
    """`reindex verify`'s report of `job` (the same function, run in this process: a subprocess
    per job would cost a Django start-up each)."""
    return verify_job(row(job))


def cli_verify(processes: Processes, job: ReindexJob) -> dict[str, Any]:
    """`reindex verify JOB --json`, run as an operator would; its report."""
    done = processes.run("reindex", "verify", str(job.pk), "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


class Fleet:
    """Named long-running workers (subprocesses of `processes`, killed at teardown anyway)."""

    def __init__(self, processes: Processes, env: dict[str, str] | None = None) -> None:
        self.processes = processes
        self.env = env or {}
        self.workers: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, str] = {}

    def start(
        self, worker_id: str, *, offset: float | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """A worker; with `offset`, its host's clock runs that many seconds ahead (or behind)."""
        merged = {**self.env, **(env or {})}
        if offset is None:
            proc = self.processes.worker(worker_id, burst=False, env=merged)
        else:
            proc = subprocess.Popen(
                [sys.executable, str(SKEWED_CLOCK), "--offset", str(offset)]
                + [*self.processes.manage[1:], "reindex_worker", "--worker-id", worker_id],
                env={**self.processes.env, **merged},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.processes.started.append(proc)
        self.workers[worker_id] = proc
        return proc

    def kill(self, worker_id: str) -> None:
        proc = self.workers[worker_id]
        os.kill(proc.pid, signal.SIGKILL)
        code, _, err = finish(proc)
        assert code == -signal.SIGKILL, err
        self.logs[worker_id] = err

    def stop(self) -> dict[str, str]:
        """SIGTERM every live worker and wait for it; every worker's stderr, by id."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for worker_id, proc in self.workers.items():
            if worker_id not in self.logs:
                code, _, err = finish(proc)
                self.logs[worker_id] = err
                assert code == 0, f"worker {worker_id} exited {code}: {err[-3000:]}"
        return self.logs

    def tail(self) -> str:
        """The end of each finished worker's log, for an assertion's message."""
        return "\n".join(f"--- {name}:\n{log[-1500:]}" for name, log in self.logs.items())


def timeline(job: ReindexJob) -> str:
    """The events of `job` and of its slices, in order, one a line: an assertion's evidence."""
    found = JobEvent.objects.filter(job_id__in=[job.pk, *(s.pk for s in slices_of(job))])
    return "\n".join(
        f"{e.id} job {e.job_id} {e.kind} by {e.actor}: {e.detail}" for e in found.order_by("id")
    )


def run_with(
    processes: Processes, env: dict[str, str], *argv: str
) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGV` as `processes.run` does, with `env` added (a short lease, say)."""
    return subprocess.run(
        [*processes.manage, *argv],
        env={**processes.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
