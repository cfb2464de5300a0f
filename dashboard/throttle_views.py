"""Setting or lifting a job's rate limit from its detail page (through reindexer.jobs).

An invalid rate answers 422 with the control again, the message beside it; a job that has ended
answers 409 like every refused action; success answers the job's new panels and a message.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboard.partials import job_context, render_flash, render_job_oob, render_throttle
from dashboard.permissions import operate_action
from dashboard.views import HtmxHttpRequest, _actor, _conflict, _next_url
from reindexer.errors import SpecError
from reindexer.jobs import RATE_FIELD, checked_rate, rate_from_text, set_throttle
from reindexer.models import InvalidTransition, ReindexJob
from reindexer.specs import SHOWN_INPUT_CHARS

NO_RATE = "enter a rate in documents per second, or use No limit"


@operate_action
def job_throttle(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(ReindexJob, pk=pk)
    typed = request.POST.get(RATE_FIELD, "")
    try:
        if "lift" in request.POST:
            rate: float | None = None
        elif not typed.strip():
            raise SpecError(NO_RATE, field=RATE_FIELD)
        elif len(typed) > SHOWN_INPUT_CHARS:  # no rate needs that many characters
            rate = checked_rate(typed)  # refused, naming the start of what was typed
        else:
            rate = rate_from_text(typed)
        done = set_throttle(job, rate, user=_actor(request))
    except SpecError as exc:
        return _invalid(request, job, str(exc), typed[:SHOWN_INPUT_CHARS])
    except InvalidTransition as exc:
        return _conflict(request, job, str(exc))
    job.refresh_from_db()
    message = done.message[0].upper() + done.message[1:] + "."
    if request.htmx:
        return HttpResponse(render_job_oob(job, request) + render_flash(message))
    messages.success(request, message)
    return redirect(_next_url(request, job))


def _invalid(request: HtmxHttpRequest, job: ReindexJob, message: str, typed: str) -> HttpResponse:
    """422, so that nothing caches it and htmx swaps it (base.html): the control with the
    message beside it and what was typed still in it."""
    if request.htmx:
        row = job_context(job, can_operate=True)
        panel = render_throttle(row, oob=True, request=request, error=message, value=typed)
        return HttpResponse(panel, status=422)
    context = {"job": job, "message": message}
    return render(request, "dashboard/conflict.html", context, status=422)
