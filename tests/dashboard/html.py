"""Reading the dashboard's HTML in tests: htmx request headers, and one element cut out by id."""

from __future__ import annotations

import re

from reindexer.models import ReindexJob

HTMX = {"HX-Request": "true"}


def detail_htmx(job: ReindexJob) -> dict[str, str]:
    """The headers of an htmx request made from the job's own page."""
    return {**HTMX, "HX-Current-URL": f"http://testserver/jobs/{job.pk}/"}


def element(html: str, element_id: str) -> str:
    """The `<section>`, `<tr>` or `<ol>` with that id, whole; fails the test when there is none."""
    found = re.search(rf'<(section|tr|ol)\b[^>]*\bid="{element_id}".*?</\1>', html, re.S)
    assert found, f"no #{element_id} in {html[:300]!r}"
    return found.group(0)
