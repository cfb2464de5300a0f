"""Who calls the JSON API, and whether they may: a bearer token, or else the session.

Each operation lists both, with the permission it needs. A bearer request is identified by its
token alone and its session is ignored: no cookie credential rides along, so a cross-site request
cannot use it, and it skips CSRF. A session request that changes state must pass Django's CSRF
check (ninja's `check_csrf`, the middleware's own logic). Anonymous callers get 401 before any
CSRF check; callers without the permission get 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from ninja.security import HttpBearer, SessionAuth
from ninja.utils import check_csrf

from dashboard.api_errors import LOG_IN, ApiError
from dashboard.tokens import InvalidToken, user_of_token
from reindexer.permissions import OPERATE, VIEW

CSRF_FAILED = (
    "CSRF verification failed: a session request that changes state must send the csrftoken "
    "cookie's value in an X-CSRFToken header (or use a bearer token instead of the session)"
)


def permitted(user: AbstractBaseUser, permission: str) -> AbstractBaseUser:
    if not user.has_perm(permission):  # type: ignore[attr-defined]
        raise ApiError(403, f"permission {permission!r} required")
    return user


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`; other schemes (a proxy's Basic auth) are not ours."""

    def __init__(self, permission: str) -> None:
        self.permission = permission
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser:
        try:
            user = user_of_token(token)
        except InvalidToken as exc:
            raise ApiError(
                401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        request.user = user
        return permitted(user, self.permission)


class Session(SessionAuth):
    """The logged-in session, with CSRF enforced on every unsafe method."""

    def __init__(self, permission: str) -> None:
        self.permission = permission
        super().__init__(csrf=True)

    def __call__(self, request: HttpRequest) -> AbstractBaseUser | None:
        user = request.user
        if not user.is_authenticated or not isinstance(user, AbstractBaseUser):
            return None
        if check_csrf(request) is not None:  # safe methods always pass
            raise ApiError(403, CSRF_FAILED)
        return permitted(user, self.permission)


viewers = [BearerToken(VIEW), Session(VIEW)]
operators = [BearerToken(OPERATE), Session(OPERATE)]


def caller(request: HttpRequest) -> AbstractBaseUser:
    """The user an operation's auth accepted."""
    user = getattr(request, "auth", None)
    assert isinstance(user, AbstractBaseUser)  # noqa: S101 - ninja ran the auth before the view
    return user


def behind_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The OpenAPI schema and the docs: for viewers only, like the API they describe."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            known = next((user for auth in viewers if (user := auth(request))), None)
        except ApiError as exc:
            return exc.response()
        if known is not None:
            return view(request, *args, **kwargs)
        match = request.resolver_match
        if match is not None and match.url_name == "openapi-view":
            return redirect_to_login(request.get_full_path())
        return ApiError(401, LOG_IN, {"WWW-Authenticate": "Bearer"}).response()

    return guarded
