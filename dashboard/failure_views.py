"""Placeholder: replaced by the helper that owns this module."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse


def failure_list(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("not built yet")


def failures_csv(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("not built yet")


def failure_source(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise Http404("not built yet")
