"""`reindex watch`: a live terminal progress bar, polling the job row until it ends."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Column

from reindexer.errors import ReindexerError
from reindexer.models import JobStatus, ReindexJob
from reindexer.presenter import present, status_label

NONE = "-"
# Ended, but not done: scripts that wait on `reindex watch` get exit code 1 for these.
UNSUCCESSFUL = {JobStatus.FAILED, JobStatus.CANCELLED}


class JobUnsuccessful(ReindexerError):
    """The watched job ended failed or cancelled."""


def _eta(seconds: float | None) -> str:
    """h:mm:ss; none once the job has ended or while it is stalled (the presenter's rule)."""
    return NONE if seconds is None else str(timedelta(seconds=round(seconds)))


def watch_job(job: ReindexJob, out: TextIO, poll_seconds: float = 0.5) -> None:
    """Redraw the job's bar until it ends; raise JobUnsuccessful if it ended failed or cancelled."""
    console = Console(file=out, force_terminal=None)
    with Progress(
        # The figures first, each labelled (a terminal line has no header row); the name last,
        # wrapping onto the next line rather than squeezing the figures on a narrow terminal.
        TextColumn("[bold]#{task.fields[job_id]}[/]"),
        BarColumn(bar_width=20),
        TaskProgressColumn(),
        TextColumn("processed {task.completed:.0f}/{task.fields[total_label]}"),
        TextColumn("rate {task.fields[rate]} docs/s"),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.description}", table_column=Column(overflow="fold")),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(
            escape(job.name),
            total=None,
            job_id=job.pk,
            total_label="?",
            rate=NONE,
            failed=0,
            eta=NONE,
        )
        while True:
            job.refresh_from_db()
            view = present(job)
            rate = view.rate
            progress.update(
                task,
                completed=job.processed_docs,
                total=job.total_docs,
                # Names are operator text, not rich markup.
                description=escape(f"{job.name} [{status_label(job)}]"),
                total_label=job.total_docs if job.total_docs is not None else "?",
                rate=f"{rate:.0f}" if rate else NONE,
                failed=job.failed_docs,
                eta=_eta(view.eta),
            )
            if job.is_finished:
                break
            time.sleep(poll_seconds)
    console.print(f"job {job.pk} {status_label(job)}" + (f": {job.error}" if job.error else ""))
    if job.status in UNSUCCESSFUL:
        raise JobUnsuccessful(f"job {job.pk} ended {job.status}, not completed")
