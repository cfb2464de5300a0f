"""Placeholder: replaced by the helper that owns this module."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse


def job_resume(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("not built yet")
