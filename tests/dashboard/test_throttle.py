"""The rate limit on the dashboard: the control for operators only, its POST through set_throttle
(CSRF-checked, errors beside it, escaped), and the limit beside the rate, in the list and on the
chart."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.charts import rate_chart
from reindexer.jobs import set_throttle
from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.samples import series
from tests.dashboard.html import HTMX, detail_htmx, element
from tests.dashboard.test_charts import add_samples, svg_of

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]


def start_tags(html: str) -> list[str]:
    """The elements a browser would build from `html`."""
    tags: list[str] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append(tag)

    Collector().feed(html)
    return tags


def limit_of(job: ReindexJob) -> float | None:
    return ReindexJob.objects.get(pk=job.pk).max_docs_per_second


# -- the control ------------------------------------------------------------------------------


def test_control__is_shown_to_operators_only(
    operator_client: Client, make_job: MakeJob, viewer: User
) -> None:
    job = make_job(status=JobStatus.RUNNING, max_docs_per_second=200)
    mine = element(
        operator_client.get(f"/jobs/{job.pk}/").content.decode(), f"job-throttle-{job.pk}"
    )
    assert 'name="max_docs_per_second"' in mine and ">Set limit</button>" in mine
    assert ">No limit</button>" in mine and 'value="200.0"' in mine

    viewer_client = Client()
    viewer_client.force_login(viewer)
    theirs = element(
        viewer_client.get(f"/jobs/{job.pk}/").content.decode(), f"job-throttle-{job.pk}"
    )
    assert "200 docs/s" in theirs  # the limit itself is for everyone to see
    assert "<form" not in theirs and "Set limit" not in theirs


def test_control__only_while_the_job_is_pending_or_running(
    operator_client: Client, make_job: MakeJob
) -> None:
    for status, shown in [
        (JobStatus.PENDING, True),
        (JobStatus.RUNNING, True),
        (JobStatus.COMPLETED, False),
        (JobStatus.FAILED, False),
        (JobStatus.CANCELLED, False),
    ]:
        job = make_job(status=status, collection=f"c-{status}")
        html = element(
            operator_client.get(f"/jobs/{job.pk}/").content.decode(), f"job-throttle-{job.pk}"
        )
        assert ("Set limit" in html) is shown, status
        assert "No limit" in html  # the panel says so either way


def test_post__sets_the_limit_and_answers_the_panels(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status=JobStatus.RUNNING, processed=2)
    response = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "200"}, headers=detail_htmx(job)
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert limit_of(job) == 200
    assert "(limit 200)" in element(html, f"job-progress-{job.pk}")
    assert "200 docs/s" in element(html, f"job-throttle-{job.pk}")
    assert "200 docs/s" in element(html, f"job-settings-{job.pk}")
    assert "limit set to 200 docs/s" in element(html, f"job-timeline-{job.pk}")
    assert f'id="job-chart-{job.pk}"' in html
    assert f"Job {job.pk}: limit set to 200 docs/s." in html  # the message
    assert job.events.filter(kind=EventKind.THROTTLED, actor="operator").count() == 1


def test_post__changes_and_lifts(operator_client: Client, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING, max_docs_per_second=200)
    changed = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "50"}, headers=detail_htmx(job)
    )
    assert "limit changed from 200 to 50 docs/s" in changed.content.decode()
    lifted = operator_client.post(
        f"/jobs/{job.pk}/throttle/",
        {"max_docs_per_second": "50", "lift": "1"},  # the No limit button, whatever is typed
        headers=detail_htmx(job),
    )
    html = lifted.content.decode()
    assert limit_of(job) is None
    assert "No limit" in element(html, f"job-throttle-{job.pk}")
    assert "(limit" not in element(html, f"job-progress-{job.pk}")


def test_post__the_same_limit_says_nothing_changed(
    operator_client: Client, make_job: MakeJob
) -> None:
    job = make_job(max_docs_per_second=20)
    response = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "20"}, headers=detail_htmx(job)
    )
    assert response.status_code == 200
    assert "limit already 20 docs/s; nothing changed" in response.content.decode()
    assert not job.events.filter(kind=EventKind.THROTTLED).exists()


def test_post__without_htmx_redirects_back(operator_client: Client, make_job: MakeJob) -> None:
    job = make_job()
    response = operator_client.post(f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "5"})
    assert (response.status_code, response["Location"]) == (302, f"/jobs/{job.pk}/")
    assert limit_of(job) == 5


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("-1", "between 0 and 1,000,000 documents per second"),
        ("abc", "must be a number"),
        ("1e9", "got 1e+09"),
        ("NaN", "must be a finite number"),
        ("", "enter a rate in documents per second, or use No limit"),
        ("9" * 200, "must be a number"),
    ],
)
def test_post__a_bad_rate_is_422_with_the_error_beside_the_control(
    operator_client: Client, make_job: MakeJob, typed: str, expected: str
) -> None:
    job = make_job(status=JobStatus.RUNNING, max_docs_per_second=7)
    response = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": typed}, headers=detail_htmx(job)
    )
    assert response.status_code == 422
    panel = element(response.content.decode(), f"job-throttle-{job.pk}")
    error = re.search(r'<p class="field-error throttle-error"[^>]*>(.*?)</p>', panel, re.S)
    assert error and expected in error.group(1)
    assert 'aria-invalid="true"' in panel
    assert limit_of(job) == 7


def test_post__escapes_what_was_typed(operator_client: Client, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING)
    typed = '"><script>alert(1)</script>'
    response = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": typed}, headers=detail_htmx(job)
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # in the message and the input
    assert "script" not in start_tags(html)


def test_post__of_a_finished_job_is_409(operator_client: Client, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.COMPLETED)
    response = operator_client.post(
        f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "5"}, headers=detail_htmx(job)
    )
    assert response.status_code == 409
    assert (
        "only a pending or running job&#x27;s rate limit can be changed"
        in response.content.decode()
    )
    assert limit_of(job) is None


def test_post__needs_the_operate_permission(viewer_client: Client, make_job: MakeJob) -> None:
    job = make_job()
    response = viewer_client.post(f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "5"})
    assert response.status_code == 403
    assert limit_of(job) is None


def test_post__needs_a_csrf_token(operator: User, make_job: MakeJob) -> None:
    job = make_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(f"/jobs/{job.pk}/throttle/", {"max_docs_per_second": "5"}, headers=HTMX)
    assert response.status_code == 403
    assert limit_of(job) is None
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    ok = client.post(
        f"/jobs/{job.pk}/throttle/",
        {"max_docs_per_second": "5", "csrfmiddlewaretoken": token.group(1)},
        headers=HTMX,
    )
    assert ok.status_code == 200 and limit_of(job) == 5


def test_get__is_not_allowed(operator_client: Client, make_job: MakeJob) -> None:
    assert operator_client.get(f"/jobs/{make_job().pk}/throttle/").status_code == 405


# -- the limit beside the rate ------------------------------------------------------------------


def test_list_row__shows_the_limit_beside_the_rate(
    viewer_client: Client, make_job: MakeJob
) -> None:
    limited = make_job(status=JobStatus.RUNNING, processed=3, max_docs_per_second=200)
    free = make_job(status=JobStatus.RUNNING, processed=3, collection="free")
    html = viewer_client.get("/").content.decode()
    assert "(limit 200)" in element(html, f"job-row-{limited.pk}")
    assert "(limit" not in element(html, f"job-row-{free.pk}")


def test_detail__shows_the_limit_beside_the_rate(viewer_client: Client, make_job: MakeJob) -> None:
    job = make_job(status=JobStatus.RUNNING, processed=3, max_docs_per_second=12.5)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    rate = re.search(r"<dt>Rate</dt><dd>(.*?)</dd>", html, re.S)
    assert rate and "docs/s" in rate.group(1) and "(limit 12.5)" in rate.group(1)


def test_chart__draws_the_limit_as_a_labelled_line(
    viewer_client: Client, make_job: MakeJob
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=100_000, processed=9000, max_docs_per_second=150)
    add_samples(job, [(120, 0, 0, 0), (60, 6000, 0, 0), (30, 9000, 0, 0)])  # 100 docs/s at most
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    svg = svg_of(html, "rate-chart")
    ns = "{http://www.w3.org/2000/svg}"
    (mark,) = [g for g in svg.iter(f"{ns}g") if "limit-mark" in g.get("class", "")]
    line = mark.find(f"{ns}line")
    label = mark.find(f"{ns}text")
    assert line is not None and label is not None and label.text == "limit 150"
    chart = rate_chart(series(job), limit=150)
    assert chart.limit is not None and not chart.limit.off_scale
    # The axis reaches the limit, and the line sits at its height.
    assert float(line.get("y1", "")) == chart.limit.y
    top = max(float(t.text or 0) for t in svg.iter(f"{ns}text") if (t.text or "").isdigit())
    assert top >= 150


def test_chart__follows_a_change_of_the_limit(
    viewer_client: Client, make_job: MakeJob, operator: User
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=100_000, processed=9000)
    add_samples(job, [(120, 0, 0, 0), (60, 6000, 0, 0)])
    assert "limit-line" not in viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    set_throttle(job, 40, user=operator)
    html = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "limit 40" in element(html, f"job-chart-{job.pk}")
    set_throttle(job, 0, user=operator)
    assert "limit-line" not in viewer_client.get(f"/jobs/{job.pk}/").content.decode()
