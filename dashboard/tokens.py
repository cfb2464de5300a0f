"""Who a bearer token belongs to: the active token with the key's hash, touched on use."""

from __future__ import annotations

from django.contrib.auth.models import User

from dashboard.models import TOKEN_PREFIX, ApiToken, hash_token

# Longer than any token we issue; refuses oversized headers before hashing them.
MAX_TOKEN_LENGTH = 200


class InvalidToken(Exception):
    """A token was sent, but it is malformed, unknown, revoked, or its user is inactive."""


def user_of_token(raw: str) -> User:
    """The user whose active token `raw` is; raises InvalidToken otherwise."""
    raw = raw.strip()
    if not raw or " " in raw:
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    if len(raw) > MAX_TOKEN_LENGTH or not raw.startswith(TOKEN_PREFIX):
        raise InvalidToken("invalid API token")
    token = (
        ApiToken.objects.active().select_related("user").filter(key_hash=hash_token(raw)).first()
    )
    if token is None:
        raise InvalidToken("invalid or revoked API token")
    token.touch()
    return token.user
