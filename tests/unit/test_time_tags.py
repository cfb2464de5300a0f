"""The `timestamp` tag: every time as a labelled UTC <time> with its exact ISO moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from django.template import Context, Template
from django.utils import formats

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)


def render(value: datetime | None, args: str = "") -> str:
    template = Template("{% load dashboard_tags %}{% timestamp value " + args + " %}")
    return template.render(Context({"value": value})).strip()


def test_timestamp__renders_a_labelled_utc_time_with_the_iso_moment_on_hover() -> None:
    assert render(MOMENT) == (
        '<time datetime="2026-03-04T05:06:07+00:00" title="2026-03-04T05:06:07+00:00">'
        "2026-03-04 05:06:07 UTC</time>"
    )


def test_timestamp__converts_another_zone_to_utc() -> None:
    paris = MOMENT.astimezone(timezone(timedelta(hours=1)))
    assert render(paris) == render(MOMENT)


def test_timestamp__a_missing_time_is_a_dash_or_the_given_text() -> None:
    assert render(None) == "—"
    assert render(None, '"no"') == "no"


def test_admin_datetime_format__matches_the_dashboard() -> None:
    assert formats.date_format(MOMENT, "DATETIME_FORMAT") == "2026-03-04 05:06:07 UTC"
    assert formats.date_format(MOMENT, "SHORT_DATETIME_FORMAT") == "2026-03-04 05:06:07 UTC"
