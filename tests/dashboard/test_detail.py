"""A job's page: progress block, settings, timeline, failures that open in place."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def test_detail__shows_progress_settings_and_timeline(viewer_client: Client, make_job) -> None:
    job = make_job(status="running", total=10, processed=4, failed=1)
    response = viewer_client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    block = re.search(rf'<section id="job-progress-{job.pk}".*?</section>', html, re.S)
    assert block
    assert f'data-job-id="{job.pk}"' in block.group(0)
    assert 'data-status="running"' in block.group(0)
    assert 'aria-valuenow="40"' in block.group(0)
    assert "docs/s" in block.group(0)
    assert f'ws-connect="/ws/jobs/{job.pk}/"' in html
    assert 'hx-ext="ws"' in html
    for setting in ["jsonl:docs.jsonl", "hashing", "sqlite-vec", "Batch size", "Max retries"]:
        assert setting in html
    # The timeline's own entries: "Created" alone would also match the settings' label.
    timeline = re.search(rf'<ol class="timeline" id="job-timeline-{job.pk}".*?</ol>', html, re.S)
    assert timeline
    created = re.search(r'<li class="event event-created">.*?</li>', timeline.group(0), re.S)
    claimed = re.search(r'<li class="event event-claimed">.*?</li>', timeline.group(0), re.S)
    assert created and claimed
    assert '<span class="event-kind">Created</span>' in created.group(0)
    assert '<span class="event-kind">Claimed</span>' in claimed.group(0)
    assert '<span class="actor">by worker-test</span>' in claimed.group(0)
    assert created.start() < claimed.start()


def test_detail__operate_buttons_follow_the_state(
    operator_client: Client, make_job, add_failure
) -> None:
    running = operator_client.get(f"/jobs/{make_job(status='running').pk}/").content.decode()
    assert ">Cancel</button>" in running
    assert ">Retry failed</button>" not in running
    done = make_job(status="completed", processed=5, failed=1)
    add_failure(done, doc_ids=["doc-1"])  # Retry failed needs a retryable failure, not a count
    finished = operator_client.get(f"/jobs/{done.pk}/").content.decode()
    assert ">Cancel</button>" not in finished
    assert ">Retry failed</button>" in finished
    assert f'hx-post="/jobs/{done.pk}/retry-failed/"' in finished


def test_detail__failed_job_shows_its_error(viewer_client: Client, make_job) -> None:
    job = make_job(status="failed")
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "too many failures" in html
    assert 'data-status="failed"' in html


def test_failures__are_paginated(viewer_client: Client, make_job, add_failure) -> None:
    job = make_job(status="completed", processed=5, failed=5)
    for n in range(25):
        add_failure(job, batch_number=n)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert html.count('<tbody class="failure') == 20
    assert 'href="?fpage=2"' in html and 'hx-get="?fpage=2"' in html
    partial = viewer_client.get(
        f"/jobs/{job.pk}/?fpage=2", headers={**HTMX, "HX-Target": "failures"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="failures">')
    assert partial.count('<tbody class="failure') == 5


def test_failure__opens_in_place_with_all_its_details(
    viewer_client: Client, make_job, add_failure
) -> None:
    job = make_job(status="completed", processed=5, failed=2)
    failure = add_failure(job, doc_ids=["doc-3", "doc-4"], attempts=4)
    page = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    url = f"/jobs/{job.pk}/failures/{failure.pk}/"
    assert f'hx-get="{url}"' in page and f'href="{url}"' in page
    partial = viewer_client.get(url, headers=HTMX).content.decode()
    assert "<html" not in partial
    for text in [
        "PermanentError",
        "poisoned document",
        '<pre class="traceback">',
        "doc-3",
        "doc-4",
    ]:
        assert text in partial
    assert "4 (permanent)" in partial
    full = viewer_client.get(url)
    assert full.status_code == 200
    assert "<html" in full.content.decode()
