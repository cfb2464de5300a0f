"""The aliases page on real swaps (real jobs run by the engine into a real sqlite-vec store):
each alias with the collection it serves, its collections, its moves with the jobs that built
them and their verification; Rollback and Prune for operators only (confirmed, CSRF-checked),
through reindexer.swaps; the refusals; the panel's own refresh equal to a reload; the nav link."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.alias_views import AliasRow
from reindexer.models import AliasMove, ReindexJob
from reindexer.swaps.overview import alias_view
from tests.dashboard.swap_jobs import (
    ALIAS,
    STORE,
    SwapJob,
    built,
    collections,
    serves,
    swap_job_fixture,  # noqa: F401 - the fixture `swap_job`
)

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}
PAGE = "/aliases/"
ROLLBACK = "/aliases/rollback/"
PRUNE = "/aliases/prune/"
ROLLBACK_BUTTON = re.compile(r"<button[^>]*>Rollback</button>")
PRUNE_BUTTON = re.compile(r"<button[^>]*>Prune</button>")


def two_swaps(swap_job: SwapJob, operator_client: Client) -> tuple[ReindexJob, ReindexJob]:
    """A first swap (auto), then a second one swapped from its page: it serves the second."""
    first = swap_job(approve="auto")
    second = swap_job()
    assert operator_client.post(f"/jobs/{second.pk}/approve/").status_code == 302
    assert serves() == built(second)
    return first, second


def card(html: str) -> str:
    dom_id = AliasRow(alias_view(STORE, ALIAS), "").dom_id
    found = re.search(rf'<section\b[^>]*\bid="{dom_id}".*?</section>', html, re.S)
    assert found, f"no #{dom_id} in the page"
    return found.group(0)


def panel(html: str) -> str:
    found = re.search(r'<div id="aliases-panel".*</div>', html, re.S)
    assert found
    return found.group(0)


def test_page__shows_what_the_alias_serves_its_collections_and_moves(
    swap_job: SwapJob, operator: User, viewer_client: Client
) -> None:
    operator_client = Client()
    operator_client.force_login(operator)
    first, second = two_swaps(swap_job, operator_client)
    shown = card(viewer_client.get(PAGE).content.decode())

    assert f'data-alias="{ALIAS}"' in shown and f'data-serves="{built(second)}"' in shown
    assert f'<code class="alias-target">{built(second)}</code>' in shown
    assert f'<code class="collection-serving" aria-current="true">{built(second)}</code>' in shown
    assert f"<code>{built(first)}</code>" in shown
    moves = re.findall(r'<tr class="move" data-kind="(\w+)" data-collection="([^"]+)"', shown)
    assert moves == [("swap", built(second)), ("swap", built(first))]
    for job in (first, second):
        assert f'href="/jobs/{job.pk}/" data-job-id="{job.pk}"' in shown
    canary = second.verification["canary"]
    assert f"canary {canary['found']}/{canary['sampled']}" in shown
    assert "passed" in shown and "operator" in shown
    assert "<button" not in shown  # a viewer: no Rollback


def test_page__offers_rollback_to_operators_with_a_confirmation(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first, second = two_swaps(swap_job, operator_client)
    shown = card(operator_client.get(PAGE).content.decode())
    button = re.search(r"<button[^>]*>Rollback</button>", shown)
    assert button
    assert f'hx-post="{ROLLBACK}"' in button.group(0)
    assert f"goes back to {built(first)}" in button.group(0) and "hx-confirm=" in button.group(0)
    assert 'name="csrfmiddlewaretoken"' in shown
    assert f'name="store" value="{STORE}"' in shown and f'name="alias" value="{ALIAS}"' in shown


def test_page__needs_a_login(client: Client) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_page__is_linked_from_the_nav(viewer_client: Client) -> None:
    nav = re.search(r'<nav class="topnav".*?</nav>', viewer_client.get("/").content.decode(), re.S)
    assert nav and f'<a href="{PAGE}">Aliases</a>' in nav.group(0)


def test_page__says_so_when_there_is_no_alias(viewer_client: Client) -> None:
    html = viewer_client.get(PAGE).content.decode()
    assert "No alias yet" in html


def test_page__its_refresh_equals_a_reload(swap_job: SwapJob, operator_client: Client) -> None:
    two_swaps(swap_job, operator_client)
    refreshed = operator_client.get(PAGE, headers=HTMX)
    assert refreshed.status_code == 200
    assert refreshed.content.decode().strip().startswith('<div id="aliases-panel"')
    reloaded = operator_client.get(PAGE).content.decode()
    assert 'hx-trigger="every 5s"' in reloaded
    token = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')  # masked afresh each time
    assert token.sub("", card(refreshed.content.decode())) == token.sub("", card(reloaded))


def test_rollback__moves_the_alias_back_and_answers_its_card(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first, second = two_swaps(swap_job, operator_client)
    data = {"store": STORE, "alias": ALIAS}

    response = operator_client.post(ROLLBACK, data, headers=HTMX)

    assert response.status_code == 200
    assert serves() == built(first)
    html = response.content.decode()
    shown = card(html)
    assert 'hx-swap-oob="true"' in shown and f'data-serves="{built(first)}"' in shown
    assert re.findall(r'data-kind="(\w+)"', shown)[0] == "rollback"
    assert f"Alias {ALIAS} rolled back: it serves {built(first)} again." in html
    # The first collection was the alias's first: no Rollback any more (Prune stays).
    assert not ROLLBACK_BUTTON.search(shown) and PRUNE_BUTTON.search(shown)
    move = AliasMove.objects.first()
    assert move is not None and (move.kind, move.actor) == ("rollback", "operator")


def test_rollback__without_javascript_redirects_to_the_page(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first, _ = two_swaps(swap_job, operator_client)
    response = operator_client.post(ROLLBACK, {"store": STORE, "alias": ALIAS}, follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert "rolled back" in response.content.decode()
    assert serves() == built(first)


def test_rollback__refused_without_the_operate_permission(
    swap_job: SwapJob, operator_client: Client, viewer: User
) -> None:
    _, second = two_swaps(swap_job, operator_client)
    client = Client()
    client.force_login(viewer)
    assert client.post(ROLLBACK, {"store": STORE, "alias": ALIAS}, headers=HTMX).status_code == 403
    assert serves() == built(second)


def test_rollback__checks_csrf_and_takes_only_posts(
    swap_job: SwapJob, operator_client: Client, operator: User
) -> None:
    _, second = two_swaps(swap_job, operator_client)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(ROLLBACK, {"store": STORE, "alias": ALIAS}).status_code == 403
    assert operator_client.get(ROLLBACK).status_code == 405
    assert serves() == built(second)


def test_rollback__nothing_earlier_is_a_conflict_with_the_reason(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first = swap_job(approve="auto")
    response = operator_client.post(ROLLBACK, {"store": STORE, "alias": ALIAS}, headers=HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert 'class="flash flash-error"' in html
    assert f'data-serves="{built(first)}"' in card(html)
    without_htmx = operator_client.post(ROLLBACK, {"store": STORE, "alias": ALIAS})
    assert without_htmx.status_code == 409 and 'role="alert"' in without_htmx.content.decode()
    assert serves() == built(first)


def test_rollback__a_bad_store_spec_is_refused(operator_client: Client) -> None:
    response = operator_client.post(ROLLBACK, {"store": "nosuch<b>", "alias": ALIAS})
    assert response.status_code == 400
    html = response.content.decode()
    assert "nosuch&lt;b&gt;" in html and "nosuch<b>" not in html


# -- prune ------------------------------------------------------------------------------------


def three_swaps(swap_job: SwapJob) -> list[ReindexJob]:
    """Three swaps (auto): the alias serves the third, and keeps the first two."""
    jobs = [swap_job(approve="auto") for _ in range(3)]
    assert collections() == [built(job) for job in jobs]
    return jobs


def test_page__offers_prune_to_operators_with_a_confirmation(
    swap_job: SwapJob, operator_client: Client
) -> None:
    *_, third = three_swaps(swap_job)
    shown = card(operator_client.get(PAGE).content.decode())
    form = re.search(r'<form[^>]*class="alias-prune[^"]*".*?</form>', shown, re.S)
    assert form, "no Prune form"
    button = PRUNE_BUTTON.search(form.group(0))
    assert button and f'hx-post="{PRUNE}"' in button.group(0)
    confirm = re.search(r'hx-confirm="([^"]*)"', button.group(0))
    assert confirm and f"Prune alias {ALIAS} on {STORE}?" in confirm.group(1)
    assert f"the one it serves ({built(third)})" in confirm.group(1)
    keep = re.search(r'<input[^>]*name="keep"[^>]*>', form.group(0))
    assert keep and 'type="number"' in keep.group(0)
    assert 'value="1"' in keep.group(0) and 'min="0"' in keep.group(0)
    assert 'name="csrfmiddlewaretoken"' in form.group(0)
    assert f'name="store" value="{STORE}"' in form.group(0)


def test_page__shows_no_prune_to_viewers(swap_job: SwapJob, viewer_client: Client) -> None:
    three_swaps(swap_job)
    shown = card(viewer_client.get(PAGE).content.decode())
    assert not PRUNE_BUTTON.search(shown) and 'name="keep"' not in shown


def test_prune__drops_the_old_collections_and_answers_the_card(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first, second, third = three_swaps(swap_job)

    response = operator_client.post(
        PRUNE, {"store": STORE, "alias": ALIAS, "keep": "1"}, headers=HTMX
    )

    assert response.status_code == 200
    assert collections() == [built(third)] and serves() == built(third)
    html = response.content.decode()
    shown = card(html)
    assert 'hx-swap-oob="true"' in shown and f'data-serves="{built(third)}"' in shown
    listed = re.search(r'<p class="alias-collections">.*?</p>', shown, re.S)
    assert listed and built(first) not in listed.group(0) and built(third) in listed.group(0)
    flash = (
        f"Alias {ALIAS} pruned: dropped {built(first)}, {built(second)}; it keeps {built(third)}."
    )
    assert flash in html and 'id="flash"' in html
    assert first.events.filter(actor="operator", detail__contains="pruned").exists()


def test_prune__keeps_the_served_one_and_says_when_nothing_is_dropped(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first = swap_job(approve="auto")
    response = operator_client.post(
        PRUNE, {"store": STORE, "alias": ALIAS, "keep": "0"}, headers=HTMX
    )
    assert response.status_code == 200
    assert f"Alias {ALIAS}: nothing to prune (keeping the newest 0)" in response.content.decode()
    assert collections() == [built(first)] and serves() == built(first)


def test_prune__without_javascript_redirects_to_the_page(
    swap_job: SwapJob, operator_client: Client
) -> None:
    first, second, third = three_swaps(swap_job)
    data = {"store": STORE, "alias": ALIAS, "keep": "2"}
    response = operator_client.post(PRUNE, data, follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert f"dropped {built(first)};" in response.content.decode()
    assert collections() == [built(second), built(third)]


def test_prune__refused_without_the_operate_permission(
    swap_job: SwapJob, viewer_client: Client
) -> None:
    jobs = three_swaps(swap_job)
    data = {"store": STORE, "alias": ALIAS, "keep": "0"}
    assert viewer_client.post(PRUNE, data, headers=HTMX).status_code == 403
    assert collections() == [built(job) for job in jobs]


def test_prune__checks_csrf_and_takes_only_posts(
    swap_job: SwapJob, operator_client: Client, operator: User
) -> None:
    jobs = three_swaps(swap_job)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": "0"}).status_code == 403
    assert operator_client.get(PRUNE).status_code == 405
    assert collections() == [built(job) for job in jobs]


@pytest.mark.parametrize("keep", ["", "-1", "1.5", "1001", "²", "<b>x</b>", "9" * 5000])
def test_prune__a_bad_keep_is_refused_escaped_and_drops_nothing(
    swap_job: SwapJob, operator_client: Client, keep: str
) -> None:
    jobs = three_swaps(swap_job)
    data = {"store": STORE, "alias": ALIAS, "keep": keep}
    response = operator_client.post(PRUNE, data, headers=HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Keep must be a whole number from 0 to 1000" in html and "<b>x</b>" not in html
    assert collections() == [built(job) for job in jobs]


def test_prune__a_bad_store_spec_is_refused_escaped(operator_client: Client) -> None:
    data = {"store": "nosuch<b>", "alias": ALIAS, "keep": "1"}
    response = operator_client.post(PRUNE, data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "nosuch&lt;b&gt;" in html and "nosuch<b>" not in html
