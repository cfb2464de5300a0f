"""Swap and Discard of a swap job awaiting approval, from its page (through reindexer.swaps).

They answer like Cancel: the job's new panels and a message, or 409 with the reason when the job
is no longer awaiting approval. A store that fails the move or the drop answers 409 too, with
the store's message (the job still awaits approval: the operator may try again); htmx swaps only
2xx, 409 and 422 (base.html), and the message must reach the page.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpResponse
from django.shortcuts import get_object_or_404

from dashboard.permissions import operate_action
from dashboard.views import HtmxHttpRequest, _actor, _conflict, _done
from reindexer.errors import BackendFailed
from reindexer.models import InvalidTransition, ReindexJob
from reindexer.swaps.actions import approve_swap, discard_swap

Act = Callable[..., ReindexJob]


def _swap_action(
    request: HtmxHttpRequest, pk: int, act: Act, message: Callable[..., str]
) -> HttpResponse:
    job = get_object_or_404(ReindexJob, pk=pk)
    try:
        done = act(job, user=_actor(request))
    except InvalidTransition as exc:
        return _conflict(request, job, str(exc))
    except BackendFailed as exc:
        return _conflict(request, job, f"The store failed ({exc.cause}): {exc}")
    job.refresh_from_db()
    return _done(request, job, message(done))


@operate_action
def job_approve(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _swap_action(request, pk, approve_swap, _approve_message)


def _built(job: ReindexJob) -> str:
    """The collection the job built, as its verification names it."""
    return job.verification.get("collection") or f"{job.collection}__{job.pk}"


def _approve_message(job: ReindexJob) -> str:
    return f"Job #{job.pk} swapped: {job.collection} now serves {_built(job)}."


@operate_action
def job_discard(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _swap_action(request, pk, discard_swap, _discard_message)


def _discard_message(job: ReindexJob) -> str:
    return f"Job #{job.pk} discarded: {_built(job)} dropped; {job.collection} left as it was."
