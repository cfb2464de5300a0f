"""`{{ traceparent|trace_url }}`: the job's trace in the viewer that REINDEXER_TRACE_URL names."""

from __future__ import annotations

import re
from urllib.parse import quote

from django import template

from reindexer import conf
from reindexer.conf import TRACE_ID_PLACEHOLDER

register = template.Library()

# W3C traceparent: version-traceid-parentid-flags; the trace id is 32 lowercase hex digits.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?P<trace_id>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id_of(traceparent: str) -> str | None:
    match = TRACEPARENT.fullmatch(traceparent.strip().lower())
    return match["trace_id"] if match else None


@register.filter
def trace_url(traceparent: object) -> str:
    """The viewer's URL for this trace, or "" when no viewer is set or the header is not W3C."""
    template_url = conf.get().trace_url
    trace_id = trace_id_of(traceparent) if isinstance(traceparent, str) else None
    if not template_url or trace_id is None:
        return ""
    # Quoted although hex needs none: the id came from a request header.
    return template_url.replace(TRACE_ID_PLACEHOLDER, quote(trace_id, safe=""))
