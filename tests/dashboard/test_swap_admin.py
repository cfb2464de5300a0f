"""The admin of swaps, on real swap jobs (run by the engine into a real sqlite-vec store): the
read-only alias moves linking to their jobs; "Swap (approve)" and "Discard" on jobs awaiting
approval, each after a confirmation page, through reindexer.swaps, refused for viewers and
reported for jobs in other states; "Roll back these aliases…" and "Prune these aliases…" on the
moves; a job's mode, approval and verification on its page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from reindexer.models import AliasMove, JobStatus, ReindexJob
from tests.dashboard.swap_jobs import (
    ALIAS,
    SwapJob,
    built,
    collections,
    serves,
    swap_job_fixture,  # noqa: F401 - the fixture `swap_job`
)

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/reindexer/reindexjob/"
MOVES = "/admin/reindexer/aliasmove/"


def act(client: Client, action: str, *jobs: ReindexJob, **extra: str) -> Any:
    data = {"action": action, "_selected_action": [j.pk for j in jobs], **extra}
    return client.post(CHANGELIST, data, follow=True)


def status_of(job: ReindexJob) -> str:
    return ReindexJob.objects.get(pk=job.pk).status


def test_swap_action__asks_first_then_swaps_and_reports_the_others(
    swap_job: SwapJob, admin_client: Client
) -> None:
    done = swap_job(approve="auto")
    job = swap_job()

    confirm = act(admin_client, "approve_swaps", job, done).content.decode()
    assert 'name="apply"' in confirm and "Yes, swap" in confirm
    assert f"alias {ALIAS} → {built(job)}, verification passed" in confirm
    assert "not awaiting approval" in confirm  # the completed one is flagged
    assert status_of(job) == JobStatus.AWAITING_APPROVAL  # nothing done yet

    text = act(admin_client, "approve_swaps", job, done, apply="1").content.decode()
    assert status_of(job) == JobStatus.COMPLETED and serves() == built(job)
    assert f"#{job.pk}: swapped (alias {ALIAS})." in text
    assert f"#{done.pk}: job {done.pk} cannot be swapped: it is completed" in text
    assert AliasMove.objects.filter(job=job).get().actor == "admin"


def test_discard_action__drops_the_collection_after_a_confirmation(
    swap_job: SwapJob, admin_client: Client
) -> None:
    job = swap_job()
    assert "Yes, discard" in act(admin_client, "discard_swaps", job).content.decode()
    assert status_of(job) == JobStatus.AWAITING_APPROVAL

    text = act(admin_client, "discard_swaps", job, apply="1").content.decode()
    assert status_of(job) == JobStatus.CANCELLED
    assert built(job) not in collections() and serves() is None
    assert f"#{job.pk}: discarded (alias {ALIAS})." in text


def test_actions__need_the_operate_permission(swap_job: SwapJob, client: Client) -> None:
    job = swap_job()
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
    client.force_login(staff)
    page = client.get(CHANGELIST).content.decode()
    assert "approve_swaps" not in page and "discard_swaps" not in page
    act(client, "approve_swaps", job, apply="1")
    act(client, "discard_swaps", job, apply="1")
    assert status_of(job) == JobStatus.AWAITING_APPROVAL and serves() is None


def test_job_page__shows_mode_approval_and_verification(
    swap_job: SwapJob, admin_client: Client
) -> None:
    job = swap_job()
    html = admin_client.get(f"{CHANGELIST}{job.pk}/change/").content.decode()
    for field, shown in (("mode", "Swap"), ("approve", "Manual")):
        row = re.search(
            rf'<div class="form-row field-{field}">.*?<div class="readonly">(.*?)</div>', html, re.S
        )
        assert row and row.group(1) == shown, field
    verification = re.search(r'<pre class="verification">(.*?)</pre>', html, re.S)
    assert verification and "&quot;passed&quot;: true" in verification.group(1)
    assert f"&quot;collection&quot;: &quot;{built(job)}&quot;" in verification.group(1)


def test_moves__listed_read_only_with_a_link_to_their_job(
    swap_job: SwapJob, admin_client: Client
) -> None:
    job = swap_job(approve="auto")
    move = AliasMove.objects.get(job=job)
    html = admin_client.get(MOVES).content.decode()
    assert f'href="{CHANGELIST}{job.pk}/change/"' in html
    assert ALIAS in html and built(job) in html and "Swap" in html
    assert admin_client.get(f"{MOVES}add/").status_code == 403
    change = admin_client.get(f"{MOVES}{move.pk}/change/").content.decode()
    assert 'name="_save"' not in change  # read-only
    assert admin_client.post(f"{MOVES}{move.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AliasMove.objects.filter(pk=move.pk).exists()


def test_moves__filtered_by_kind(swap_job: SwapJob, admin_client: Client) -> None:
    job = swap_job(approve="auto")
    assert built(job) in admin_client.get(f"{MOVES}?kind=swap").content.decode()
    assert built(job) not in admin_client.get(f"{MOVES}?kind=rollback").content.decode()


def roll_back(client: Client, *moves: AliasMove, **extra: str) -> Any:
    data = {"action": "roll_back_aliases", "_selected_action": [m.pk for m in moves], **extra}
    return client.post(MOVES, data, follow=True)


def test_rollback_action__asks_first_then_moves_the_alias_back_once(
    swap_job: SwapJob, admin_client: Client
) -> None:
    first = swap_job(approve="auto")
    second = swap_job(approve="auto")
    assert serves() == built(second)
    moves = list(AliasMove.objects.order_by("id"))

    confirm = roll_back(admin_client, *moves).content.decode()
    assert "Yes, roll back" in confirm and f'data-alias="{ALIAS}"' in confirm
    assert serves() == built(second)  # nothing done yet

    # Both moves are of one alias: it goes back one step, not two.
    text = roll_back(admin_client, *moves, apply="1").content.decode()
    assert serves() == built(first)
    assert f"Alias {ALIAS} (sqlite-vec) rolled back: it serves {built(first)} again" in text
    latest = AliasMove.objects.order_by("-id").first()
    assert latest is not None and (latest.kind, latest.actor) == ("rollback", "admin")

    # Nothing before the first swap: refused with the reason, the alias left as it is.
    text = roll_back(admin_client, *moves, apply="1").content.decode()
    assert serves() == built(first)
    assert f"Alias {ALIAS} (sqlite-vec): " in text and 'class="error"' in text


def test_rollback_action__needs_the_operate_permission(swap_job: SwapJob, client: Client) -> None:
    swap_job(approve="auto")
    second = swap_job(approve="auto")
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_aliasmove"))
    client.force_login(staff)
    assert "roll_back_aliases" not in client.get(MOVES).content.decode()
    roll_back(client, *AliasMove.objects.all(), apply="1")
    assert serves() == built(second)


def prune_action(client: Client, *moves: AliasMove, **extra: str) -> Any:
    data = {"action": "prune_aliases", "_selected_action": [m.pk for m in moves], **extra}
    return client.post(MOVES, data, follow=True)


def test_prune_action__asks_how_many_to_keep_then_prunes_each_alias_once(
    swap_job: SwapJob, admin_client: Client
) -> None:
    first, second, third = (swap_job(approve="auto") for _ in range(3))
    moves = list(AliasMove.objects.order_by("id"))
    assert len(moves) == 3

    form = prune_action(admin_client, *moves).content.decode()
    assert "Yes, prune" in form and f'data-alias="{ALIAS}"' in form
    assert re.search(r'<input[^>]*name="keep"[^>]*value="1"', form)
    assert collections() == [built(first), built(second), built(third)]  # nothing done yet

    # Three moves of one alias: one prune, one message.
    text = prune_action(admin_client, *moves, apply="1", keep="1").content.decode()
    assert collections() == [built(third)] and serves() == built(third)
    message = (
        f"Alias {ALIAS} (sqlite-vec) pruned, keeping the newest 1: dropped {built(first)},"
        f" {built(second)}."
    )
    assert text.count(message) == 1
    assert first.events.filter(actor="admin", detail__contains="pruned").exists()

    # Again: nothing left to drop, said so.
    text = prune_action(admin_client, *moves, apply="1", keep="0").content.decode()
    assert f"Alias {ALIAS} (sqlite-vec) pruned, keeping the newest 0: nothing to drop." in text
    assert collections() == [built(third)]


def test_prune_action__an_invalid_keep_shows_the_form_again(
    swap_job: SwapJob, admin_client: Client
) -> None:
    first, second = (swap_job(approve="auto") for _ in range(2))
    moves = list(AliasMove.objects.all())
    for keep in ("-1", "abc", "1001"):
        page = prune_action(admin_client, *moves, apply="1", keep=keep).content.decode()
        assert "Yes, prune" in page and 'class="errorlist' in page, keep
    assert collections() == [built(first), built(second)]


def test_prune_action__needs_the_operate_permission(swap_job: SwapJob, client: Client) -> None:
    first, second = (swap_job(approve="auto") for _ in range(2))
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_aliasmove"))
    client.force_login(staff)
    assert "prune_aliases" not in client.get(MOVES).content.decode()
    prune_action(client, *AliasMove.objects.all(), apply="1", keep="0")
    assert collections() == [built(first), built(second)]
