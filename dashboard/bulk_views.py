"""Bulk cancel and bulk retry from the jobs list: a confirmation step, then the confirmed POST.

Both steps are plain form posts (they work without JavaScript) and htmx posts (the confirmation
appears above the list, the outcomes in the flash area, and the list re-fetches its own URL).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from dashboard.bulk_plan import BULK_MAX, Action, Outcome, Plan, carry_out, plan
from dashboard.partials import render_jobs_refresh
from dashboard.permissions import operate_action


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=[(a.value, a.value) for a in Action])
    confirmed = forms.BooleanField(required=False)

    def __init__(self, data: QueryDict) -> None:
        super().__init__(data)
        self.job_ids = data.getlist("job")

    def clean(self) -> dict[str, object] | None:
        cleaned = super().clean() or {}
        if not self.job_ids:
            raise forms.ValidationError("Select at least one job.")
        if len(self.job_ids) > BULK_MAX:
            raise forms.ValidationError(
                f"{len(self.job_ids)} jobs selected: a bulk action takes at most {BULK_MAX}."
            )
        if not all(
            value.isascii() and value.isdigit() and len(value) <= 18 for value in self.job_ids
        ):
            raise forms.ValidationError("The selection holds an invalid job id.")
        cleaned["ids"] = [int(value) for value in self.job_ids]
        return cleaned


@operate_action
def jobs_bulk(request: HttpRequest) -> HttpResponse:
    form = BulkForm(request.POST)
    back = _back_url(request)
    if not form.is_valid():
        errors = [str(e) for errors in form.errors.values() for e in errors]
        return _render(request, {"errors": errors, "back": back}, status=422)
    chosen = plan(Action(form.cleaned_data["action"]), form.cleaned_data["ids"])
    if not form.cleaned_data["confirmed"]:
        return _render(request, {"plan": chosen, "back": back})
    outcomes = carry_out(chosen, _actor(request))
    if getattr(request, "htmx", False):
        flash = render_to_string("dashboard/_bulk_outcome.html", _outcome_context(chosen, outcomes))
        # The confirmation goes (an empty answer), the outcomes show, and the list re-fetches.
        return HttpResponse(flash + render_jobs_refresh())
    for outcome in outcomes:
        level = messages.SUCCESS if outcome.done else messages.ERROR
        messages.add_message(request, level, _outcome_line(outcome))
    return redirect(back)


def _render(request: HttpRequest, context: dict[str, object], *, status: int = 200) -> HttpResponse:
    """The confirmation (or the selection's error): above the list for htmx, a page otherwise.
    422 for an error, which base.html tells htmx to swap."""
    template = "dashboard/_bulk_confirm.html" if getattr(request, "htmx", False) else None
    return render(request, template or "dashboard/bulk_confirm.html", context, status=status)


def _outcome_context(chosen: Plan, outcomes: list[Outcome]) -> dict[str, object]:
    done = sum(outcome.done for outcome in outcomes)
    return {
        "lines": [(outcome.done, _outcome_line(outcome)) for outcome in outcomes],
        "summary": f"{chosen.action.heading}: {done} of {len(outcomes)} done.",
        "level": "info" if done == len(outcomes) else "error",
    }


def _outcome_line(outcome: Outcome) -> str:
    who = f"Job #{outcome.job_id}" + (f" ({outcome.name})" if outcome.name else "")
    if outcome.done:
        return f"{who}: {outcome.message}."
    return f"{who}: refused: {outcome.message}."


def _back_url(request: HttpRequest) -> str:
    """The list the form was on, with its filters; never another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("dashboard:job-list")


def _actor(request: HttpRequest) -> AbstractBaseUser:
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied
    return user
