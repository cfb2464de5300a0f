"""The pictures as the pages serve them: the detail page's rate chart, the rows' sparklines and
current rates, and the summary tiles, from real samples in the database."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.partials import render_chart, render_summary_tiles
from reindexer.models import JobSample, JobStatus, ReindexJob

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
NASTY = "<script>alert('x')</script> & \"co\""


def add_samples(job: ReindexJob, rows: list[tuple[float, int, int, int]]) -> None:
    """Samples (seconds before now, processed, failed, retries)."""
    now = timezone.now()
    JobSample.objects.bulk_create(
        JobSample(job=job, at=now - timedelta(seconds=ago), processed=p, failed=f, retries=r)
        for ago, p, f, r in rows
    )


def svg_of(html: str, css_class: str) -> ET.Element:
    match = re.search(rf'<svg class="{css_class}".*?</svg>', html, re.DOTALL)
    assert match, f"no <svg class={css_class}> in the page"
    return ET.fromstring(match.group(0))  # noqa: S314 (our own markup)


def points(element: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in element.attrib["points"].split()]  # type: ignore[misc]


@pytest.fixture
def flaky_run(make_job: Callable[..., ReindexJob]) -> ReindexJob:
    """A completed job whose samples saw failures (at the third) and retries (by the fourth)."""
    job = make_job(status=JobStatus.COMPLETED, total=5000, processed=5000, failed=3, name=NASTY)
    ReindexJob.objects.filter(pk=job.pk).update(retries=6)
    job.refresh_from_db()
    end = job.finished_at
    assert end is not None
    JobSample.objects.bulk_create(
        JobSample(job=job, at=end - timedelta(seconds=s), processed=p, failed=f, retries=r)
        for s, p, f, r in [(40, 0, 0, 0), (30, 1000, 0, 0), (20, 2000, 3, 0), (10, 3000, 3, 6)]
    )
    return job


def test_detail__draws_the_rate_chart_as_valid_svg_from_the_samples(
    viewer_client: Client, flaky_run: ReindexJob
) -> None:
    html = viewer_client.get(f"/jobs/{flaky_run.pk}/").content.decode()
    svg = svg_of(html, "rate-chart")
    line = svg.find(f".//{SVG}polyline[@class='rate-line']")
    assert line is not None
    # Four samples and the job's final point: four segments, two vertices each, left to right.
    vertices = points(line)
    assert len(vertices) == 8
    assert [x for x, _ in vertices] == sorted(x for x, _ in vertices)
    (mark,) = svg.findall(f".//{SVG}line[@class='failure-mark']")
    (band,) = svg.findall(f".//{SVG}rect[@class='retry-band']")
    # The failure was first seen by the third sample; the retries between the third and fourth.
    third, fourth = vertices[3][0], vertices[5][0]
    assert float(mark.attrib["x1"]) == pytest.approx(third, abs=0.1)
    assert float(band.attrib["x"]) == pytest.approx(third, abs=0.1)
    assert float(band.attrib["x"]) + float(band.attrib["width"]) == pytest.approx(fourth, abs=0.2)
    assert "3 failed" in "".join(mark.itertext())
    assert "6 retries" in "".join(band.itertext())


def test_detail__chart_escapes_the_jobs_name_and_carries_no_style_attribute(
    viewer_client: Client, flaky_run: ReindexJob
) -> None:
    html = viewer_client.get(f"/jobs/{flaky_run.pk}/").content.decode()
    chart = re.search(r'<section id="job-chart-.*?</section>', html, re.DOTALL)
    assert chart
    assert "<script>" not in chart.group(0)
    assert "style=" not in chart.group(0)
    title = svg_of(html, "rate-chart").find(f"{SVG}title")
    assert title is not None and NASTY in (title.text or "")


def test_detail__a_job_without_samples_says_so_instead_of_a_chart(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'id="job-chart-{job.pk}"' in html
    assert "No samples yet" in html
    assert "rate-chart" not in html.replace("job-chart", "")


def test_render_chart__out_of_band_is_the_pages_chart_with_the_swap_attribute(
    viewer_client: Client, flaky_run: ReindexJob
) -> None:
    pushed = render_chart(flaky_run, oob=True)
    assert pushed.startswith(f'<section id="job-chart-{flaky_run.pk}"')
    assert 'hx-swap-oob="true"' in pushed
    page = viewer_client.get(f"/jobs/{flaky_run.pk}/").content.decode()
    assert pushed.replace(' hx-swap-oob="true"', "") in page


def test_detail__shows_the_current_rate_beside_the_cumulative_one(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=100_000, processed=9000)
    add_samples(job, [(120, 0, 0, 0), (60, 3000, 0, 0), (30, 6000, 0, 0)])
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    rate = re.search(r"<dt>Rate</dt><dd>(.*?)</dd>", html, re.DOTALL)
    assert rate
    now_rate = re.search(r"\(([\d.,]+) now\)", rate.group(1))
    assert now_rate, rate.group(1)
    assert float(now_rate.group(1).replace(",", "")) == pytest.approx(100, rel=0.05)


def test_list__a_running_row_shows_its_sparkline_and_current_rate(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    running = make_job(status=JobStatus.RUNNING, total=100_000, processed=900, collection="a")
    add_samples(running, [(90, 0, 0, 0), (60, 300, 0, 0), (30, 600, 0, 0)])
    done = make_job(status=JobStatus.COMPLETED, total=5, processed=5, collection="b")
    add_samples(done, [(90, 0, 0, 0), (60, 5, 0, 0)])
    html = viewer_client.get("/").content.decode()
    row = re.search(rf'<tr id="job-row-{running.pk}".*?</tr>', html, re.DOTALL)
    finished = re.search(rf'<tr id="job-row-{done.pk}".*?</tr>', html, re.DOTALL)
    assert row and finished
    spark = svg_of(row.group(0), "sparkline")
    line = spark.find(f"{SVG}polyline")
    assert line is not None and len(points(line)) == 6  # three samples and the row: three steps
    assert re.search(r"[\d.]+ now", row.group(0))
    assert "sparkline" not in finished.group(0)
    assert " now<" not in finished.group(0)


def test_list__sparklines_cost_one_query_whatever_the_running_rows(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    def running_with_samples(i: int) -> None:
        job = make_job(status=JobStatus.RUNNING, processed=3, collection=f"c{i}")
        add_samples(job, [(40, 0, 0, 0), (20, 1, 0, 0), (10, 2, 0, 0)])

    make_job(collection="pending")
    running_with_samples(0)
    viewer_client.get("/")  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        viewer_client.get("/")
    for i in range(1, 11):
        running_with_samples(i)
    with CaptureQueriesContext(connection) as many:
        html = viewer_client.get("/").content.decode()
    assert html.count('class="sparkline"') == 11
    assert len(many) == len(few)


def test_summary_tiles__count_running_queued_and_recent_failures_and_sum_the_rates_now(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    fast = make_job(status=JobStatus.RUNNING, processed=6000, collection="a", heartbeat_age=2)
    add_samples(fast, [(60, 0, 0, 0)])
    slow = make_job(status=JobStatus.RUNNING, processed=600, collection="b", heartbeat_age=50)
    add_samples(slow, [(60, 0, 0, 0)])
    make_job(collection="c")
    make_job(status=JobStatus.FAILED, collection="d")
    old = make_job(status=JobStatus.FAILED, collection="e")
    ReindexJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=2))
    html = viewer_client.get("/").content.decode()
    tiles = re.search(r'<section id="summary-tiles".*?</section>', html, re.DOTALL)
    assert tiles

    def tile(name: str) -> str:
        found = re.search(
            rf'data-tile="{name}">.*?<span class="tile-value">(.*?)</span>', tiles.group(0)
        )
        assert found, name
        return found.group(1)

    assert tile("running") == "2"
    assert tile("queued") == "1"
    assert tile("failed") == "1"
    assert float(tile("rate").replace(",", "")) == pytest.approx(110, rel=0.05)
    assert re.fullmatch(r"5\ds ago", tile("heartbeat"))  # the older of the two, stale
    assert re.search(r'class="tile tile-bad" data-tile="heartbeat"', tiles.group(0))


def test_render_summary_tiles__out_of_band_is_the_lists_tiles_with_the_swap_attribute(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    make_job()
    pushed = render_summary_tiles()
    assert pushed.startswith('<section id="summary-tiles"')
    assert 'hx-swap-oob="true"' in pushed
    page = viewer_client.get("/").content.decode()
    assert pushed.replace(' hx-swap-oob="true"', "") in page
