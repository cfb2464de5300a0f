"""Per-user API tokens for the JSON API. Only a hash of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import Q
from django.utils import timezone

TOKEN_PREFIX = "rxk_"  # noqa: S105 - a public marker, not a secret
# How much of the token is kept in clear, so that operators can tell their tokens apart.
SHOWN_CHARS = len(TOKEN_PREFIX) + 8
# last_used_at is a hint for operators; refreshing it on every request would add a write to each.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    """The stored form of a token: its SHA-256, hex. Tokens are random, so no salt is needed."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        """Tokens that have not been revoked, of active users."""
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=200, blank=True, help_text="What the token is for")
    prefix = models.CharField(max_length=SHOWN_CHARS, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[ApiTokenQuerySet] = ApiTokenQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        label = f" ({self.name})" if self.name else ""
        return f"{self.prefix}…{label}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def set_new_key(self) -> str:
        """Give the token a fresh random key; return it in clear (it is not stored)."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.prefix = raw[:SHOWN_CHARS]
        self.key_hash = hash_token(raw)
        return raw

    @classmethod
    def issue(cls, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; return it with its key in clear, to be shown once."""
        token = cls(user_id=user.pk, name=name)
        raw = token.set_new_key()
        token.save()
        return token, raw

    def revoke(self) -> None:
        ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.refresh_from_db(fields=["revoked_at"])

    def touch(self) -> None:
        """Record a use, at most once per LAST_USED_RESOLUTION."""
        now = timezone.now()
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION),
            pk=self.pk,
        ).update(last_used_at=now)
