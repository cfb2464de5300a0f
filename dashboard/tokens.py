"""Who is calling the JSON API: a bearer token, or else a session (which must pass CSRF)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware

from dashboard.models import TOKEN_PREFIX, ApiToken, hash_token

# Longer than any token we issue; refuses oversized headers before hashing them.
MAX_TOKEN_LENGTH = 200
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_INVALID = 'Bearer error="invalid_token"'


class NotAuthenticated(Exception):
    """No usable credentials; `challenge` is the WWW-Authenticate header to answer with."""

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message)
        self.challenge = challenge


class CsrfFailed(Exception):
    """A session-authenticated request that changes state failed Django's CSRF check."""


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer ...` header; None when no bearer header was sent.

    Other schemes (a proxy's Basic auth, say) are not ours and are ignored.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credentials = credentials.strip()
    if not credentials or " " in credentials:
        raise NotAuthenticated("the Authorization header must be 'Bearer <token>'", _INVALID)
    return credentials


def token_of(request: HttpRequest) -> ApiToken | None:
    """The active ApiToken the request carries; None if it sends no bearer token.

    Raises NotAuthenticated when a token was sent but is malformed, unknown, revoked, or belongs
    to an inactive user.
    """
    raw = bearer_token(request)
    if raw is None:
        return None
    if len(raw) > MAX_TOKEN_LENGTH or not raw.startswith(TOKEN_PREFIX):
        raise NotAuthenticated("invalid API token", _INVALID)
    token = (
        ApiToken.objects.active().select_related("user").filter(key_hash=hash_token(raw)).first()
    )
    if token is None:
        raise NotAuthenticated("invalid or revoked API token", _INVALID)
    token.touch()
    return token


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, run on demand, keeping the reason instead of rendering a page."""

    reason = ""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseForbidden:
        self.reason = reason
        return HttpResponseForbidden(reason)


def _no_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse()  # pragma: no cover - only handed to the CSRF check as its callback


def enforce_csrf(request: HttpRequest) -> None:
    check = _CsrfCheck(_no_view)
    check.process_request(request)
    if check.process_view(request, _no_view, (), {}) is not None:
        raise CsrfFailed(check.reason)


def authenticate(request: HttpRequest) -> AbstractBaseUser:
    """The caller, by bearer token or else by session. Views using this must be csrf_exempt.

    A bearer request is identified by its token alone, and its session (if any) is ignored: no
    cookie credential is involved, so a cross-site request cannot ride on it, and it skips CSRF.
    A session request that changes state must pass Django's CSRF check.
    """
    token = token_of(request)
    if token is not None:
        request.user = token.user
        return token.user
    user = request.user
    if not user.is_authenticated or not isinstance(user, AbstractBaseUser):
        raise NotAuthenticated(
            "authentication required: log in, or send 'Authorization: Bearer <token>'"
        )
    if request.method not in SAFE_METHODS:
        enforce_csrf(request)
    return user
