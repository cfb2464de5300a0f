"""Placeholder: replaced by the helper that owns this module."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse


def jobs_bulk(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("not built yet")
