"""`api_token USERNAME [--name TEXT]`: issue an API token and print it once.

`api_token USERNAME --list` shows the user's tokens; `api_token USERNAME --revoke PREFIX` revokes
the one active token whose key starts with PREFIX (as shown by --list).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from dashboard.models import TOKEN_PREFIX, ApiToken


class Command(BaseCommand):
    help = "Issue (and print once), list or revoke a user's API tokens for /api/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--list", action="store_true", help="list the user's tokens")
        group.add_argument("--revoke", metavar="PREFIX", help="revoke the token shown as PREFIX")

    def handle(
        self, *args: Any, username: str, name: str, list: bool, revoke: str | None, **options: Any
    ) -> None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        tokens = ApiToken.objects.filter(user=user)
        if list:
            for token in tokens:
                state = (
                    f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
                )
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(
                    f"{token.prefix}  {state}  created {token.created_at:%Y-%m-%d %H:%M}  "
                    f"last used {used}  {token.name}"
                )
            return
        if revoke is not None:
            self._revoke(tokens, username, revoke)
            return
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        _, raw = ApiToken.issue(user, name)
        self.stderr.write("Store this token now; it is not kept and cannot be shown again.")
        self.stdout.write(raw)

    def _revoke(self, tokens: QuerySet[ApiToken], username: str, given: str) -> None:
        prefix = given.rstrip("…").rstrip(".")
        # Every key starts with TOKEN_PREFIX, so that alone (or less) would match all the user's
        # tokens: revoking must name one token.
        if len(prefix) <= len(TOKEN_PREFIX) or not prefix.startswith(TOKEN_PREFIX):
            raise CommandError(
                f"--revoke needs the token's prefix as --list shows it ({TOKEN_PREFIX}…), "
                f"not {given!r}"
            )
        matching = tokens.filter(prefix__startswith=prefix, revoked_at__isnull=True)
        count = matching.count()
        if count == 0:
            raise CommandError(f"{username} has no active token starting with {prefix!r}")
        if count > 1:
            raise CommandError(
                f"{prefix!r} matches {count} active tokens of {username}; give more of the prefix"
            )
        matching.update(revoked_at=timezone.now())
        self.stdout.write("revoked 1 token")
