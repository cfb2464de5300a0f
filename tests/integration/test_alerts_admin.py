"""The admin of webhooks (staff with the model's permissions; events as checkboxes; URLs
redacted) and of their deliveries (read-only, linking to the job)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from reindexer.models import AlertEvent, JobStatus, ReindexJob, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db

SECRET_URL = "https://hooks.example.com/services/T000/B000/s3cr3t-token"


def staff(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return user


def test_staff_with_add_permission__adds_a_webhook_with_event_checkboxes(client: Client) -> None:
    staff(client, "add_webhook", "view_webhook", "change_webhook")
    form = client.get("/admin/reindexer/webhook/add/")
    assert form.status_code == 200
    html = form.content.decode()
    for value in AlertEvent.values:
        assert f'type="checkbox" name="events" value="{value}"' in html

    response = client.post(
        "/admin/reindexer/webhook/add/",
        {
            "url": SECRET_URL,
            "format": "slack",
            "events": [AlertEvent.STALLED, AlertEvent.FAILED],
            "active": "on",
            "description": "ops channel",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    hook = Webhook.objects.get()
    assert hook.url == SECRET_URL and hook.format == "slack"
    assert hook.events == [AlertEvent.FAILED, AlertEvent.STALLED]  # in AlertEvent's order

    listing = client.get("/admin/reindexer/webhook/").content.decode()
    assert "https://hooks.example.com/…" in listing
    assert "s3cr3t-token" not in listing
    assert "Failed, Stalled" in listing


def test_staff_without_permissions__cannot_see_webhooks(client: Client) -> None:
    staff(client)
    assert client.get("/admin/reindexer/webhook/").status_code == 403
    assert client.get("/admin/reindexer/webhookdelivery/").status_code == 403


def test_deliveries__read_only_filtered_and_linked_to_the_job(
    client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status=JobStatus.COMPLETED, processed=5)
    delivery = WebhookDelivery.objects.create(
        job=job, url=SECRET_URL, event=AlertEvent.COMPLETED, key="event:1", response_code=500
    )
    staff(client, "view_webhookdelivery", "change_webhookdelivery", "add_webhookdelivery")

    listing = client.get(
        "/admin/reindexer/webhookdelivery/?state__exact=pending&event__exact=completed"
    )
    html = listing.content.decode()
    assert listing.status_code == 200
    assert f'href="/admin/reindexer/reindexjob/{job.pk}/change/"' in html
    assert "s3cr3t-token" not in html
    assert (
        client.get("/admin/reindexer/webhookdelivery/?state__exact=delivered")
        .content.decode()
        .count('/change/">#')
        == 0
    )

    page = client.get(f"/admin/reindexer/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "s3cr3t-token" not in page
    assert 'name="state"' not in page  # nothing to edit, whatever the permissions say
    assert client.get("/admin/reindexer/webhookdelivery/add/").status_code == 403
