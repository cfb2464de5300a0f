"""API tokens in the admin: issue one (its key is shown once), see when it was last used, revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from dashboard.models import ApiToken

if TYPE_CHECKING:
    _TokenAdminBase = admin.ModelAdmin[ApiToken]
else:  # ModelAdmin is generic only in the stubs
    _TokenAdminBase = admin.ModelAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(_TokenAdminBase):
    list_display = ("__str__", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "prefix")
    list_select_related = ("user",)
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "name")
        return ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiToken | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("user", "prefix", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if not change:
            raw = obj.set_new_key()
            messages.warning(
                request,
                f"The new token for {obj.user.get_username()} is {raw} - copy it now: "
                "it is stored only as a hash and will not be shown again.",
            )
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
