"""The decorators of the dashboard's views: one for pages, one for operate actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpResponseBase
from django.views.decorators.http import require_GET, require_POST

from reindexer.permissions import OPERATE, VIEW

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def page(permission: str = VIEW) -> Callable[[View], View]:
    """A GET page for signed-in users with `permission` (403 without it)."""

    def decorate(view: View) -> View:
        guarded = require_GET(
            login_required(permission_required(permission, raise_exception=True)(view))
        )
        return guarded

    return decorate


def operate_action(view: View) -> View:
    """A POST that changes a job: signed in, with the operate permission, CSRF-checked."""
    guarded = permission_required(OPERATE, raise_exception=True)(view)
    return require_POST(login_required(guarded))
