"""Filters that turn a job's figures into short, readable text."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone

register = template.Library()

DASH = "—"


@register.filter
def duration(seconds: float | None) -> str:
    """12s, 4m 05s, 2h 03m, 3d 4h; a dash when unknown."""
    if seconds is None:
        return DASH
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@register.filter
def ago(seconds: float | None) -> str:
    return DASH if seconds is None else f"{duration(seconds)} ago"


@register.filter
def rate(per_second: float | None) -> str:
    """Docs per second, with precision only where it matters."""
    if per_second is None:
        return DASH
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:,.1f}"


@register.filter
def count(value: int | None) -> str:
    """Thousands separated, or '?' when unknown (a source whose size is not known yet)."""
    return "?" if value is None else f"{value:,}"


@register.inclusion_tag("dashboard/_time.html")
def timestamp(value: datetime | None, empty: str = DASH) -> dict[str, str]:
    """A <time> in UTC, labelled; static/js/localtime.js rewrites it to the browser's zone."""
    if value is None:
        return {"empty": empty}
    moment = value.astimezone(UTC) if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    return {
        "iso": moment.isoformat(timespec="seconds"),
        "text": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
