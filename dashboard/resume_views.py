"""Resuming a failed job from the dashboard: the same job continues from its checkpoint."""

from __future__ import annotations

from django.http import HttpResponse

from dashboard.permissions import operate_action
from dashboard.views import HtmxHttpRequest, _operate
from reindexer.jobs import resume_job
from reindexer.models import ReindexJob


@operate_action
def job_resume(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    # _operate answers like Cancel: the new state and a message, or 409 with the reason.
    return _operate(request, pk, resume_job, _resume_message)


def _resume_message(job: ReindexJob) -> str:
    return (
        f"Job #{job.pk} queued to resume from its checkpoint, after {job.processed_docs}"
        " processed documents."
    )
