"""The partials shared by pages, htmx responses and websocket pushes (the consumer's contract)."""

from __future__ import annotations

import re

import pytest

from dashboard.partials import render_job_push

pytestmark = pytest.mark.django_db


def _top_level_tags(html: str) -> list[tuple[str, str]]:
    return re.findall(r"^<(\w+) id=\"([\w-]+)\"[^>]*hx-swap-oob=\"true\"", html, re.M)


def test_push__is_the_row_and_the_progress_block_out_of_band(make_job) -> None:
    job = make_job(status="running", total=8, processed=2)
    html = render_job_push(job)
    assert _top_level_tags(html) == [
        ("tr", f"job-row-{job.pk}"),
        ("section", f"job-progress-{job.pk}"),
    ]
    assert html.count('role="progressbar"') == 2
    assert html.count('aria-valuenow="25"') == 2
    assert html.count(f'data-job-id="{job.pk}"') == 2


def test_push__gates_the_operate_buttons_unless_told(make_job) -> None:
    job = make_job(status="running")
    gated = render_job_push(job)
    assert ">Cancel</button>" in gated
    assert "op-gated" in gated
    assert "csrfmiddlewaretoken" not in gated  # htmx sends the header from <body>
    assert ">Cancel</button>" not in render_job_push(job, can_operate=False)
    shown = render_job_push(job, can_operate=True)
    assert ">Cancel</button>" in shown and "op-gated" not in shown


def test_push__labels_follow_the_state(make_job) -> None:
    assert ">cancelling<" in render_job_push(make_job(status="running", cancelling=True))
    assert ">stalled<" in render_job_push(make_job(status="running", heartbeat_age=99))
    assert ">completed with errors<" in render_job_push(make_job(status="completed", failed=1))
