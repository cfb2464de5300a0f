"""`reindex watch`: a live terminal progress bar, polling the job row until it ends."""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from reindexer.models import ReindexJob
from reindexer.presenter import status_label


def watch_job(job: ReindexJob, out: TextIO, poll_seconds: float = 0.5) -> None:
    console = Console(file=out, force_terminal=None)
    with Progress(
        TextColumn("[bold]#{task.fields[job_id]}[/] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.fields[total_label]}"),
        TextColumn("{task.fields[rate]} docs/s"),
        TextColumn("failed {task.fields[failed]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(
            escape(job.name), total=None, job_id=job.pk, total_label="?", rate="-", failed=0
        )
        while True:
            job.refresh_from_db()
            rate = job.docs_per_second()
            progress.update(
                task,
                completed=job.processed_docs,
                total=job.total_docs,
                # Names are operator text, not rich markup.
                description=escape(f"{job.name} [{status_label(job)}]"),
                total_label=job.total_docs if job.total_docs is not None else "?",
                rate=f"{rate:.0f}" if rate else "-",
                failed=job.failed_docs,
            )
            if job.is_finished:
                break
            time.sleep(poll_seconds)
    console.print(f"job {job.pk} {status_label(job)}" + (f": {job.error}" if job.error else ""))
