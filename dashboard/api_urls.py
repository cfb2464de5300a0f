"""The JSON API's URLs: ninja's operations, the schema and the docs, then a JSON 404 for the rest.

Every answer under /api/ is JSON and never cached; a wrong method is a JSON 405 with `Allow`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from django.utils.cache import add_never_cache_headers

from dashboard.api import api
from dashboard.api_errors import ApiError, method_not_allowed

app_name = "api"

View = Callable[..., HttpResponseBase]


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any other path under /api/, and /api/ itself: a JSON 404 rather than the HTML page."""
    return ApiError(404, f"no API endpoint at {request.path}").response()


def json_answers(view: View) -> View:
    """JSON for ninja's plain-text 405, and no caching of anything under /api/."""

    @wraps(view)
    def answered(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = [m.strip() for m in response["Allow"].split(",") if m.strip()]
            response = method_not_allowed(request.method or "", allowed)
        add_never_cache_headers(response)
        return response

    answered.csrf_exempt = True  # type: ignore[attr-defined]  # ninja's auth checks CSRF
    return answered


def _answered(pattern: URLPattern | URLResolver) -> URLPattern:
    assert isinstance(pattern, URLPattern)  # noqa: S101 - ninja yields plain paths
    # ninja's root ("api-root", reversed to find the schema's path prefix) answers a JSON 404.
    view = not_found if pattern.name == "api-root" else pattern.callback
    return URLPattern(pattern.pattern, json_answers(view), pattern.default_args, pattern.name)


urlpatterns: list[URLPattern] = [
    *(_answered(pattern) for pattern in api.urls[0]),
    # Every other path ending in a slash is a JSON 404; paths without a trailing slash are
    # left to APPEND_SLASH's redirect.
    re_path(r"^(?:.*/)?$", json_answers(not_found)),
]
