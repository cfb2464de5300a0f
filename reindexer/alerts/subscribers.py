"""Who receives an alert: the active `Webhook` rows, and the URLs of REINDEXER_WEBHOOK_URLS."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from reindexer import conf
from reindexer.models import Webhook, WebhookFormat

# A settings URL ending in this fragment gets Slack's format; the fragment is never sent.
SLACK_FRAGMENT = "slack"


@dataclass(frozen=True)
class Subscriber:
    url: str
    format: str
    webhook_id: int | None = None  # None: from the settings


def origin(url: str) -> str:
    """scheme://host[:port] of `url`: how a webhook is shown, as its path or query may hold a
    token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def without_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


def from_settings(urls: tuple[str, ...]) -> list[Subscriber]:
    """REINDEXER_WEBHOOK_URLS' subscribers: every event; "#slack" selects Slack's format."""
    subscribers = []
    for url in urls:
        slack = urlsplit(url).fragment == SLACK_FRAGMENT
        subscribers.append(
            Subscriber(
                url=without_fragment(url),
                format=WebhookFormat.SLACK if slack else WebhookFormat.JSON,
            )
        )
    return subscribers


def subscribers_for(event: str) -> list[Subscriber]:
    """The subscribers of `event`, one per URL (a URL both in the admin and the settings is sent
    once: the admin's row, which says its format, wins)."""
    found: dict[str, Subscriber] = {}
    for hook in Webhook.objects.filter(active=True).order_by("id"):
        if hook.events and event not in hook.events:
            continue
        url = without_fragment(hook.url)
        found.setdefault(url, Subscriber(url=url, format=hook.format, webhook_id=hook.pk))
    for subscriber in from_settings(conf.get().webhook_urls):
        found.setdefault(subscriber.url, subscriber)
    return list(found.values())


def any_subscriber() -> bool:
    """Whether anybody listens at all (one cheap query): else there is nothing to notice."""
    return bool(conf.get().webhook_urls) or Webhook.objects.filter(active=True).exists()
