"""A job's progress over time (JobSample rows), recorded by the engine after its batch commits.

Placeholder interface, filled in by the charts work: `JobSampler.note` is called by the engine
after every batch commit, fenced by nothing (samples are advisory).
"""

from __future__ import annotations

from datetime import datetime

from reindexer.models import ReindexJob


class JobSampler:
    """Records at most a sample per interval for one job, thinning the series as it grows."""

    def __init__(self, job: ReindexJob) -> None:
        self.job = job

    def note(self, job: ReindexJob, now: datetime | None = None) -> None:
        """After a batch commit: record a sample if one is due."""
