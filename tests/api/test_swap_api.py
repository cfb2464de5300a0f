"""The swap mode's JSON API on real swap jobs (run by the engine into real sqlite-vec stores):
approve and discard a job awaiting approval, the aliases with their moves and verification,
rollback and prune; who may call them, and how each refuses (409 invalid transition, 502 when the
store fails, 400 invalid input)."""

from __future__ import annotations

from typing import Any

import pytest

from reindexer.models import AliasMove, EventKind, JobStatus
from tests.api.conftest import Api
from tests.dashboard.swap_jobs import (
    ALIAS,
    STORE,
    SwapJob,
    built,
    collections,
    lose_built_collection,
    serves,
    swap_job_fixture,  # noqa: F401 - the fixture `swap_job`
)

pytestmark = pytest.mark.django_db(transaction=True)


def approve_url(job_id: int) -> str:
    return f"/api/jobs/{job_id}/approve/"


def discard_url(job_id: int) -> str:
    return f"/api/jobs/{job_id}/discard/"


ROLLBACK = "/api/aliases/rollback/"
PRUNE = "/api/aliases/prune/"


# -- approve ----------------------------------------------------------------------------------


def test_approve__moves_the_alias_and_completes_the_job(
    swap_job: SwapJob, as_operator: Api
) -> None:
    job = swap_job()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert serves() is None  # a new alias: nothing served until the swap

    response = as_operator.post(approve_url(job.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["mode"], body["approve"]) == (
        job.pk, "completed", "swap", "manual",
    )  # fmt: skip
    assert body["verification"]["passed"] is True
    assert body["verification"]["collection"] == built(job)
    assert serves() == built(job)
    move = AliasMove.objects.get(job=job)
    assert (move.kind, move.collection, move.actor) == ("swap", built(job), "operator")
    assert job.events.filter(kind=EventKind.SWAPPED).exists()


def test_approve__by_token_with_csrf_enforced(swap_job: SwapJob, by_token: Api) -> None:
    job = swap_job()
    assert by_token.post(approve_url(job.pk)).status_code == 200
    assert serves() == built(job)


def test_approve__refused_to_viewers_and_anonymous_callers(
    swap_job: SwapJob, as_viewer: Api, anonymous: Api
) -> None:
    job = swap_job()
    viewer = as_viewer.post(approve_url(job.pk))
    nobody = anonymous.post(approve_url(job.pk))
    assert (viewer.status_code, nobody.status_code) == (403, 401)
    assert "error" in viewer.json() and "error" in nobody.json()
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL and serves() is None


def test_approve__a_job_not_awaiting_approval_is_a_conflict(
    swap_job: SwapJob, as_operator: Api
) -> None:
    done = swap_job(approve="auto")
    assert done.status == JobStatus.COMPLETED
    response = as_operator.post(approve_url(done.pk))
    assert response.status_code == 409
    assert "only a swap job awaiting approval" in response.json()["error"]
    assert as_operator.post(approve_url(999_999)).status_code == 404


def test_approve__a_store_that_fails_answers_502_and_the_job_keeps_waiting(
    swap_job: SwapJob, as_operator: Api
) -> None:
    job = swap_job()
    lose_built_collection(job)

    response = as_operator.post(approve_url(job.pk))

    assert response.status_code == 502
    error = response.json()["error"]
    assert error.startswith("the store failed") and built(job) in error
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert serves() is None and not AliasMove.objects.exists()


# -- discard ----------------------------------------------------------------------------------


def test_discard__cancels_the_job_drops_its_collection_and_leaves_the_alias(
    swap_job: SwapJob, as_operator: Api
) -> None:
    first = swap_job(approve="auto")
    job = swap_job()
    assert built(job) in collections()

    response = as_operator.post(discard_url(job.pk))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert serves() == built(first)
    assert built(job) not in collections()
    assert job.events.filter(kind=EventKind.DISCARDED).exists()


def test_discard__refused_to_viewers_and_for_other_states(
    swap_job: SwapJob, as_viewer: Api, as_operator: Api
) -> None:
    job = swap_job()
    assert as_viewer.post(discard_url(job.pk)).status_code == 403
    assert as_operator.post(discard_url(job.pk)).status_code == 200
    again = as_operator.post(discard_url(job.pk))
    assert again.status_code == 409 and "cancelled" in again.json()["error"]


# -- aliases and rollback ---------------------------------------------------------------------


def two_swaps(swap_job: SwapJob, api: Api) -> tuple[Any, Any]:
    """A first swap (auto), then a second one approved: the alias serves the second."""
    first = swap_job(approve="auto")
    second = swap_job()
    assert api.post(approve_url(second.pk)).status_code == 200
    return first, second


def test_aliases__list_what_each_serves_its_collections_and_moves(
    swap_job: SwapJob, as_operator: Api, as_viewer: Api
) -> None:
    first, second = two_swaps(swap_job, as_operator)

    response = as_viewer.get("/api/aliases/")

    assert response.status_code == 200
    (alias,) = response.json()
    assert (alias["store"], alias["alias"], alias["serves"]) == (STORE, ALIAS, built(second))
    assert alias["collections"] == [built(first), built(second)]
    assert alias["can_rollback"] is True and alias["error"] == ""
    moves = [(m["kind"], m["collection"], m["previous"], m["job"]) for m in alias["moves"]]
    assert moves == [
        ("swap", built(second), built(first), second.pk),
        ("swap", built(first), "", first.pk),
    ]
    newest = alias["moves"][0]
    assert newest["actor"] == "operator"
    assert newest["verification"]["passed"] is True
    assert newest["verification"]["previous"] == built(first)
    assert newest["verification"]["canary"]["found"] == newest["verification"]["canary"]["sampled"]


def test_aliases__need_a_login(anonymous: Api) -> None:
    assert anonymous.get("/api/aliases/").status_code == 401


def test_rollback__moves_the_alias_back_and_then_has_nothing_earlier(
    swap_job: SwapJob, as_operator: Api
) -> None:
    first, second = two_swaps(swap_job, as_operator)

    response = as_operator.post(ROLLBACK, {"store": STORE, "alias": ALIAS})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["alias"]["serves"] == built(first) == serves()
    assert body["alias"]["moves"][0]["kind"] == "rollback"
    assert built(first) in body["message"] and built(second) in body["message"]
    move = AliasMove.objects.first()
    assert move is not None
    assert (move.kind, move.collection, move.previous, move.actor) == (
        "rollback", built(first), built(second), "operator",
    )  # fmt: skip

    # The first collection was the alias's first: nothing earlier to go back to.
    again = as_operator.post(ROLLBACK, {"store": STORE, "alias": ALIAS})
    assert again.status_code == 409 and again.json()["error"]
    assert serves() == built(first)


def test_rollback__refused_to_viewers(swap_job: SwapJob, as_operator: Api, as_viewer: Api) -> None:
    _, second = two_swaps(swap_job, as_operator)
    assert as_viewer.post(ROLLBACK, {"store": STORE, "alias": ALIAS}).status_code == 403
    assert serves() == built(second)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alias": ALIAS}, "store"),
        ({"store": STORE}, "alias"),
        ({"store": STORE, "alias": ""}, "alias"),
        ({"store": STORE, "alias": ALIAS, "extra": 1}, "extra"),
        ({"store": 7, "alias": ALIAS}, "store"),
    ],
)
def test_rollback__invalid_input_is_a_400_naming_the_field(
    as_operator: Api, body: dict[str, Any], field: str
) -> None:
    response = as_operator.post(ROLLBACK, body)
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]


def test_rollback__an_unknown_store_is_a_400(as_operator: Api) -> None:
    response = as_operator.post(ROLLBACK, {"store": "nosuchstore", "alias": ALIAS})
    assert response.status_code == 400
    assert "nosuchstore" in response.json()["error"]


def test_rollback__a_body_that_is_not_an_object_is_a_400(as_operator: Api) -> None:
    response = as_operator.post(ROLLBACK, raw="[1, 2]")
    assert response.status_code == 400


def test_rollback__an_alias_never_moved_is_a_conflict(as_operator: Api) -> None:
    response = as_operator.post(ROLLBACK, {"store": STORE, "alias": "never"})
    assert response.status_code == 409 and response.json()["error"]


# -- prune ------------------------------------------------------------------------------------


def three_swaps(swap_job: SwapJob) -> list[Any]:
    """Three swaps (auto): the alias serves the third, and keeps the first two for a rollback."""
    jobs = [swap_job(approve="auto") for _ in range(3)]
    assert serves() == built(jobs[-1]) and collections() == [built(job) for job in jobs]
    return jobs


def test_prune__drops_all_but_the_newest_and_answers_what_is_left(
    swap_job: SwapJob, as_operator: Api
) -> None:
    first, second, third = three_swaps(swap_job)

    response = as_operator.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": 1})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "store": STORE,
        "alias": ALIAS,
        "dropped": [built(first), built(second)],
        "kept": [built(third)],
    }
    assert collections() == [built(third)] and serves() == built(third)
    assert first.events.filter(kind=EventKind.DISCARDED, actor="operator").exists()

    # Nothing more to drop: the same prune again drops nothing.
    again = as_operator.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": 1})
    assert again.status_code == 200
    assert (again.json()["dropped"], again.json()["kept"]) == ([], [built(third)])


def test_prune__keeps_the_served_collection_even_with_keep_0(
    swap_job: SwapJob, as_operator: Api
) -> None:
    first, second, third = three_swaps(swap_job)
    assert as_operator.post(ROLLBACK, {"store": STORE, "alias": ALIAS}).status_code == 200
    assert serves() == built(second)

    response = as_operator.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": 0})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["dropped"], body["kept"]) == ([built(first), built(third)], [built(second)])
    assert serves() == built(second) and collections() == [built(second)]


def test_prune__leaves_a_swap_under_way_alone(swap_job: SwapJob, as_operator: Api) -> None:
    first = swap_job(approve="auto")
    waiting = swap_job()  # awaiting approval: its collection is still needed for the swap
    response = as_operator.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": 0})
    assert response.status_code == 200
    assert response.json()["dropped"] == []
    assert collections() == [built(first), built(waiting)]


def test_prune__by_token_with_csrf_enforced(swap_job: SwapJob, by_token: Api) -> None:
    first, second, third = three_swaps(swap_job)
    response = by_token.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": 2})
    assert response.status_code == 200, response.content
    assert response.json()["dropped"] == [built(first)]
    assert collections() == [built(second), built(third)]


def test_prune__refused_to_viewers_and_anonymous_callers(
    swap_job: SwapJob, as_viewer: Api, anonymous: Api
) -> None:
    jobs = three_swaps(swap_job)
    body = {"store": STORE, "alias": ALIAS, "keep": 0}
    viewer, nobody = as_viewer.post(PRUNE, body), anonymous.post(PRUNE, body)
    assert (viewer.status_code, nobody.status_code) == (403, 401)
    assert "error" in viewer.json() and "error" in nobody.json()
    assert collections() == [built(job) for job in jobs]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"store": STORE, "alias": ALIAS}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": None}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": -1}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": 1001}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": "1"}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": 1.5}, "keep"),
        ({"store": STORE, "alias": ALIAS, "keep": True}, "keep"),
        ({"alias": ALIAS, "keep": 1}, "store"),
        ({"store": STORE, "alias": "", "keep": 1}, "alias"),
        ({"store": STORE, "alias": ALIAS, "keep": 1, "extra": 1}, "extra"),
    ],
)
def test_prune__invalid_input_is_a_400_naming_the_field(
    as_operator: Api, body: dict[str, Any], field: str
) -> None:
    response = as_operator.post(PRUNE, body)
    assert response.status_code == 400, response.content
    assert field in [e["field"] for e in response.json()["errors"]]


def test_prune__a_bad_keep_drops_nothing(swap_job: SwapJob, as_operator: Api) -> None:
    jobs = three_swaps(swap_job)
    response = as_operator.post(PRUNE, {"store": STORE, "alias": ALIAS, "keep": -1})
    assert response.status_code == 400
    assert "keep must be between 0 and 1000, got -1" in response.json()["error"]
    assert collections() == [built(job) for job in jobs]


def test_prune__an_unknown_store_is_a_400(as_operator: Api) -> None:
    response = as_operator.post(PRUNE, {"store": "nosuchstore", "alias": ALIAS, "keep": 1})
    assert response.status_code == 400
    assert "nosuchstore" in response.json()["error"]


def test_prune__a_body_that_is_not_an_object_is_a_400(as_operator: Api) -> None:
    assert as_operator.post(PRUNE, raw="[1]").status_code == 400
    assert as_operator.post(PRUNE, raw="not json").status_code == 400


def test_job__shows_its_verification(swap_job: SwapJob, as_viewer: Api) -> None:
    job = swap_job()
    body = as_viewer.get(f"/api/jobs/{job.pk}/").json()
    assert body["status"] == "awaiting_approval"
    verification = body["verification"]
    assert verification["passed"] is True and verification["failures"] == []
    assert (verification["missing"], verification["duplicates"]) == (0, 0)
    assert verification["count"] == 12 and verification["previous"] is None
