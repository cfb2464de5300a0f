"""Admin of the alert webhooks (edited by staff with the model's permissions) and of their
deliveries (read-only: written by the dispatcher). URLs are shown as scheme://host only, since a
webhook's path or query may hold its token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from reindexer.alerts.subscribers import origin
from reindexer.models import AlertEvent, Webhook, WebhookDelivery

if TYPE_CHECKING:
    _WebhookAdmin = admin.ModelAdmin[Webhook]
    _DeliveryAdmin = admin.ModelAdmin[WebhookDelivery]
    _WebhookForm = forms.ModelForm[Webhook]
else:  # the stubs' generics are not subscriptable at run time
    _WebhookAdmin = _DeliveryAdmin = admin.ModelAdmin
    _WebhookForm = forms.ModelForm


class WebhookForm(_WebhookForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=AlertEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event.",
    )

    class Meta:
        model = Webhook
        fields = ("url", "format", "events", "active", "description")

    def clean_events(self) -> list[str]:
        chosen = set(self.cleaned_data.get("events") or [])
        return [value for value in AlertEvent.values if value in chosen]  # in a stable order


@admin.register(Webhook)
class WebhookAdmin(_WebhookAdmin):
    form = WebhookForm
    list_display = ("shown_url", "description", "format", "subscribed", "active", "created_at")
    list_filter = ("active", "format")
    ordering = ("id",)

    @admin.display(description="URL")
    def shown_url(self, obj: Webhook) -> str:
        return origin(obj.url) + "/…"

    @admin.display(description="Events")
    def subscribed(self, obj: Webhook) -> str:
        if not obj.events:
            return "all"
        labels = dict(AlertEvent.choices)
        return ", ".join(str(labels.get(value, value)) for value in obj.events)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_DeliveryAdmin):
    list_display = (
        "created_at",
        "job_link",
        "event",
        "shown_url",
        "format",
        "state",
        "attempts",
        "response_code",
        "error",
        "delivered_at",
    )
    list_filter = ("state", "event")
    list_select_related = ("job",)
    ordering = ("-created_at", "-id")
    fields = readonly_fields = (
        "job_link",
        "event",
        "key",
        "shown_url",
        "format",
        "state",
        "attempts",
        "response_code",
        "error",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "payload",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Job", ordering="job")
    def job_link(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:reindexer_reindexjob_change", args=[obj.job_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.job))

    @admin.display(description="URL")
    def shown_url(self, obj: WebhookDelivery) -> str:
        return origin(obj.url) + "/…"
