"""Swap and Discard on a swap job's page, on real swap jobs (run by the engine into a real
sqlite-vec store): the cutover panel with the verification's results, the buttons for operators
only (confirmed, CSRF-checked), each POST through reindexer.swaps, the refusals (409 with the
reason, the store's failure named), the awaiting-approval badge in the list, the panel pushed
live as a reload shows it, and the New job form's swap fields."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client

from dashboard.partials import job_context, render_detail_push
from reindexer.models import AliasMove, JobStatus, ReindexJob
from tests.dashboard.html import HTMX, detail_htmx, element
from tests.dashboard.swap_jobs import (
    SwapJob,
    built,
    collections,
    lose_built_collection,
    serves,
    swap_job_fixture,  # noqa: F401 - the fixture `swap_job`
)

pytestmark = pytest.mark.django_db(transaction=True)


def swap_panel(html: str, job: ReindexJob) -> str:
    return element(html, f"job-swap-{job.pk}")


def status_of(job: ReindexJob) -> str:
    return ReindexJob.objects.get(pk=job.pk).status


# -- the panel --------------------------------------------------------------------------------


def test_panel__shows_the_verification_and_the_buttons_to_an_operator(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job()
    panel = swap_panel(operator_client.get(f"/jobs/{job.pk}/").content.decode(), job)

    assert 'data-status="awaiting_approval"' in panel and 'data-verified="passed"' in panel
    assert "awaiting approval" in panel
    assert f"<code>{built(job)}</code>" in panel
    verification = job.verification
    assert f"{verification['missing']} missing, {verification['duplicates']} duplicates" in panel
    canary = verification["canary"]
    assert f"{canary['found']} / {canary['sampled']}" in panel
    assert "nothing: a new alias" in panel
    for label, url in (("Swap", "approve"), ("Discard", "discard")):
        button = re.search(rf"<button[^>]*>{label}</button>", panel)
        assert button, f"no {label} button"
        assert f'hx-post="/jobs/{job.pk}/{url}/"' in button.group(0)
        assert "hx-confirm=" in button.group(0)
    assert panel.count('name="csrfmiddlewaretoken"') == 2


def test_panel__has_no_buttons_for_a_viewer(
    swap_job: SwapJob, client: Client, viewer: User
) -> None:
    job = swap_job()
    client.force_login(viewer)
    panel = swap_panel(client.get(f"/jobs/{job.pk}/").content.decode(), job)
    assert "Verify" in panel
    assert "<button" not in panel


def test_panel__absent_for_a_job_that_is_not_a_swap(
    operator_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status=JobStatus.COMPLETED)
    assert f'id="job-swap-{job.pk}"' not in operator_client.get(f"/jobs/{job.pk}/").content.decode()


def test_panel__pushed_live_as_a_reload_shows_it(
    swap_job: SwapJob, operator_client: Client
) -> None:
    """A live page never contradicts a reload: the pushed panel is the page's, out of band."""
    job = swap_job()
    page = swap_panel(operator_client.get(f"/jobs/{job.pk}/").content.decode(), job)
    pushed = render_detail_push(job, can_operate=True).swap
    assert 'hx-swap-oob="true"' in pushed
    strip = re.compile(
        r' hx-swap-oob="true"|<input type="hidden" name="(csrfmiddlewaretoken|next)"[^>]*>'
    )
    assert strip.sub("", pushed.strip()) == strip.sub("", page.strip())
    assert render_detail_push(job, can_operate=True).html().count(f'id="job-swap-{job.pk}"') == 1


def test_panel__gated_in_a_push_for_an_unknown_viewer(swap_job: SwapJob) -> None:
    job = swap_job()
    gated = render_detail_push(job).swap  # the buttons show only where the body allows operating
    assert "op-gated" in gated and ">Swap</button>" in gated


def test_panel__escapes_the_gates_messages(make_job: Callable[..., ReindexJob]) -> None:
    """Rendering only: a stored verification whose messages hold markup is shown as text."""
    job = make_job(mode="swap", collection="docs")
    verification = {
        "passed": False, "collection": "docs__1", "previous": None, "missing": 1,
        "duplicates": 0, "count": 4, "previous_count": None, "budget": 0,
        "canary": {"sampled": 2, "found": 1, "misses": ["<img src=x onerror=alert(1)>"]},
        "failures": ["<script>alert(1)</script> missing"],
    }  # fmt: skip
    ReindexJob.objects.filter(pk=job.pk).update(verification=verification)
    job.refresh_from_db()
    html = render_to_string("dashboard/_job_swap.html", {"r": job_context(job, can_operate=True)})
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and 'data-verified="failed"' in html


# -- Swap -------------------------------------------------------------------------------------


def test_swap__moves_the_alias_and_answers_the_new_panels(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job()
    response = operator_client.post(f"/jobs/{job.pk}/approve/", headers=detail_htmx(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert status_of(job) == JobStatus.COMPLETED
    assert serves() == built(job)
    panel = swap_panel(html, job)
    assert 'hx-swap-oob="true"' in panel and 'data-status="completed"' in panel
    assert "<button" not in panel and "Swapped:" in panel
    assert f'id="job-progress-{job.pk}"' in html
    assert f"Job #{job.pk} swapped: docs now serves {built(job)}." in html
    assert AliasMove.objects.get(job=job).actor == "operator"


def test_swap__without_javascript_redirects_back_with_a_message(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job()
    response = operator_client.post(f"/jobs/{job.pk}/approve/", follow=True)
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert f"Job #{job.pk} swapped" in response.content.decode()
    assert status_of(job) == JobStatus.COMPLETED


def test_swap__refused_without_the_operate_permission(
    swap_job: SwapJob, client: Client, viewer: User
) -> None:
    job = swap_job()
    client.force_login(viewer)
    assert client.post(f"/jobs/{job.pk}/approve/", headers=HTMX).status_code == 403
    assert client.post(f"/jobs/{job.pk}/discard/", headers=HTMX).status_code == 403
    assert status_of(job) == JobStatus.AWAITING_APPROVAL


def test_swap__needs_a_login_and_a_post(swap_job: SwapJob, client: Client, operator: User) -> None:
    job = swap_job()
    assert client.post(f"/jobs/{job.pk}/approve/").status_code == 302  # to the login page
    client.force_login(operator)
    assert client.get(f"/jobs/{job.pk}/approve/").status_code == 405
    assert status_of(job) == JobStatus.AWAITING_APPROVAL


def test_swap__checks_csrf(swap_job: SwapJob, operator: User) -> None:
    job = swap_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(f"/jobs/{job.pk}/approve/").status_code == 403
    assert status_of(job) == JobStatus.AWAITING_APPROVAL


def test_swap__a_job_no_longer_awaiting_is_a_conflict(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job(approve="auto")
    response = operator_client.post(f"/jobs/{job.pk}/approve/", headers=HTMX)
    assert response.status_code == 409
    assert "only a swap job awaiting approval" in response.content.decode()
    without_htmx = operator_client.post(f"/jobs/{job.pk}/approve/")
    assert without_htmx.status_code == 409 and "cannot be done now" in without_htmx.content.decode()


def test_swap__a_store_that_fails_is_named_and_the_job_keeps_waiting(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job()
    lose_built_collection(job)
    response = operator_client.post(f"/jobs/{job.pk}/approve/", headers=detail_htmx(job))
    assert response.status_code == 409
    html = response.content.decode()
    assert "The store failed" in html and built(job) in html and 'class="flash flash-error"' in html
    assert status_of(job) == JobStatus.AWAITING_APPROVAL
    assert ">Swap</button>" in swap_panel(html, job)  # still there, to try again


# -- Discard ----------------------------------------------------------------------------------


def test_discard__cancels_and_drops_the_collection(
    swap_job: SwapJob, operator_client: Client
) -> None:
    job = swap_job()
    response = operator_client.post(f"/jobs/{job.pk}/discard/", headers=detail_htmx(job))
    assert response.status_code == 200
    assert status_of(job) == JobStatus.CANCELLED
    assert built(job) not in collections() and serves() is None
    html = response.content.decode()
    assert "Not swapped" in swap_panel(html, job)
    assert f"Job #{job.pk} discarded: {built(job)} dropped; docs left as it was." in html


# -- the jobs list ----------------------------------------------------------------------------


def test_list__shows_the_awaiting_approval_badge_and_a_link_to_review(
    swap_job: SwapJob, viewer_client: Client
) -> None:
    job = swap_job()
    row = element(viewer_client.get("/").content.decode(), f"job-row-{job.pk}")
    assert 'data-status="awaiting_approval"' in row
    assert '<span class="badge badge-awaiting-approval">awaiting approval</span>' in row
    assert f'href="/jobs/{job.pk}/#job-swap-{job.pk}"' in row and "Review swap" in row


def test_list__has_a_tab_for_jobs_awaiting_approval(
    swap_job: SwapJob, viewer_client: Client
) -> None:
    job = swap_job()
    html = viewer_client.get("/?status=awaiting_approval").content.decode()
    assert "Awaiting approval" in html and f'id="job-row-{job.pk}"' in html


def test_new_job_form__offers_the_swap_mode_and_explains_approve(operator_client: Client) -> None:
    html = operator_client.get("/jobs/new/").content.decode()
    mode = re.search(r'<select[^>]*name="mode".*?</select>', html, re.S)
    approve = re.search(r'<select[^>]*name="approve".*?</select>', html, re.S)
    assert mode and approve
    assert all(f'value="{value}"' in mode.group(0) for value in ("full", "incremental", "swap"))
    assert all(f'value="{value}"' in approve.group(0) for value in ("auto", "manual"))
    assert "Swap mode: auto moves the alias once the verification passes" in html
