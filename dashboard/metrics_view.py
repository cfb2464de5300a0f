"""`GET /metrics`: the Prometheus scrape of the web process, for staff only.

A scraper sends `Authorization: Bearer <token>`, a per-user API token (dashboard.tokens) of a
staff user: a service account made staff for the purpose, revocable like any token. A browser
uses a staff session. Metrics name every job and its status counts, which is more than a viewer
of one job needs to see, hence staff rather than the view permission.

As in the API, a bearer request is judged by its token alone: its session is ignored.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from dashboard.tokens import InvalidToken, user_of_token
from reindexer.metrics import web_registry

REGISTRY = web_registry()
BEARER = "bearer "


def _refused(status: int, message: str, challenge: str | None = None) -> HttpResponse:
    response = HttpResponse(f"{message}\n", status=status, content_type="text/plain")
    if challenge is not None:
        response["WWW-Authenticate"] = challenge
    return response


def _caller(request: HttpRequest) -> AbstractBaseUser | AnonymousUser | HttpResponse:
    """The user a bearer token or else the session names; a 401 for a bad token."""
    header = request.headers.get("Authorization", "")
    if header[: len(BEARER)].lower() != BEARER:
        return request.user
    try:
        return user_of_token(header[len(BEARER) :])
    except InvalidToken as exc:
        return _refused(401, str(exc), 'Bearer error="invalid_token"')


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    user = _caller(request)
    if isinstance(user, HttpResponse):
        return user
    if not user.is_authenticated:
        return _refused(401, "a bearer token or a staff session is required", "Bearer")
    if not getattr(user, "is_staff", False):
        return _refused(403, "metrics are for staff users only")
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(REGISTRY), content_type=content_type)
