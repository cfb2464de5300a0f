"""The aliases page: each alias a swap job moved, the collection it serves, the jobs that built
its collections with their verification, Rollback and Prune (through reindexer.swaps).

The page re-fetches its own panel every few seconds (htmx), rendered by the same partial as a
full load, so a live page never contradicts a reload; a Rollback or a Prune answers the alias's new
card.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.vary import vary_on_headers

from dashboard.partials import Ops, ops_mode, render_flash
from dashboard.permissions import operate_action, page
from dashboard.views import HtmxHttpRequest, _actor
from reindexer.errors import BackendFailed, SpecError
from reindexer.models import InvalidTransition
from reindexer.permissions import can_operate
from reindexer.swaps.actions import MAX_KEEP, prune, rollback
from reindexer.swaps.overview import AliasView, alias_view, aliases

REFRESH_SECONDS = 5


@dataclass(frozen=True)
class AliasRow:
    """What `_alias_row.html` renders: the alias, its element id, and how to show Rollback and
    Prune."""

    view: AliasView
    ops: Ops

    @property
    def dom_id(self) -> str:
        # A store spec may hold any character: the id is a digest of (store, alias).
        key = f"{self.view.store}\0{self.view.alias}".encode()
        return "alias-" + hashlib.blake2b(key, digest_size=8).hexdigest()

    @property
    def max_keep(self) -> int:
        return MAX_KEEP


def render_alias_row(row: AliasRow, request: HtmxHttpRequest, *, oob: bool = False) -> str:
    return render_to_string("dashboard/_alias_row.html", {"a": row, "oob": oob}, request=request)


@page()
@vary_on_headers("HX-Request")
def alias_list(request: HtmxHttpRequest) -> HttpResponse:
    ops = ops_mode(can_operate(request.user))
    context = {
        "alias_rows": [AliasRow(view, ops) for view in aliases()],
        "refresh_seconds": REFRESH_SECONDS,
    }
    template = "dashboard/_aliases_panel.html" if request.htmx else "dashboard/aliases.html"
    return render(request, template, context)


@operate_action
def alias_rollback(request: HtmxHttpRequest) -> HttpResponse:
    store, alias = request.POST.get("store", ""), request.POST.get("alias", "")
    try:
        move = rollback(store, alias, user=_actor(request))
    except SpecError as exc:
        return _refused(request, str(exc), status=400)
    except InvalidTransition as exc:  # NothingToRollBack: no earlier collection to go back to
        return _refused(request, str(exc), store=store, alias=alias)
    except BackendFailed as exc:
        return _refused(request, f"The store failed ({exc.cause}): {exc}", store=store, alias=alias)
    message = f"Alias {alias} rolled back: it serves {move.collection} again."
    if request.htmx:
        row = AliasRow(alias_view(store, alias), "shown")
        return HttpResponse(render_alias_row(row, request, oob=True) + render_flash(message))
    messages.success(request, message)
    return redirect("dashboard:alias-list")


@operate_action
def alias_prune(request: HtmxHttpRequest) -> HttpResponse:
    store, alias = request.POST.get("store", ""), request.POST.get("alias", "")
    typed = request.POST.get("keep", "").strip()
    keep = _keep_from(typed)
    if keep is None:
        message = f"Keep must be a whole number from 0 to {MAX_KEEP}, got {typed[:40]!r}."
        return _refused(request, message, status=400)
    try:
        dropped = prune(store, alias, keep, user=_actor(request))
    except SpecError as exc:
        return _refused(request, str(exc), status=400)
    except BackendFailed as exc:
        return _refused(request, f"The store failed ({exc.cause}): {exc}", store=store, alias=alias)
    view = alias_view(store, alias)
    kept = ", ".join(view.collections) or "nothing"
    if dropped:
        message = f"Alias {alias} pruned: dropped {', '.join(dropped)}; it keeps {kept}."
    else:
        message = f"Alias {alias}: nothing to prune (keeping the newest {keep}); it keeps {kept}."
    if request.htmx:
        row = AliasRow(view, "shown")
        return HttpResponse(render_alias_row(row, request, oob=True) + render_flash(message))
    messages.success(request, message)
    return redirect("dashboard:alias-list")


def _keep_from(typed: str) -> int | None:
    # ASCII digits only (no sign, no point, no "²"), and few enough for int() to be cheap.
    if not (typed.isascii() and typed.isdigit()) or len(typed) > len(str(MAX_KEEP)):
        return None
    keep = int(typed)
    return keep if keep <= MAX_KEEP else None


def _refused(
    request: HtmxHttpRequest, message: str, *, status: int = 409, store: str = "", alias: str = ""
) -> HttpResponse:
    """409 with the reason, and the alias as it is now (it may have moved meanwhile)."""
    if request.htmx:
        html = render_flash(message, level="error")
        if store and alias:
            row = AliasRow(alias_view(store, alias), "shown")
            html = render_alias_row(row, request, oob=True) + html
        return HttpResponse(html, status=status)
    context = {
        "alias_rows": [AliasRow(view, "shown") for view in aliases()],
        "refresh_seconds": REFRESH_SECONDS,
        "alias_error": message,
    }
    return render(request, "dashboard/aliases.html", context, status=status)
