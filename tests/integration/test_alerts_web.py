"""The web process sends alerts too: real daphne, no worker running, a real HTTP receiver.

A swap job that a worker left awaiting approval is announced by daphne's dispatcher; the Swap
posted to daphne's API completes it and daphne announces that as well, with no worker around.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from dashboard.models import ApiToken
from reindexer.models import AlertEvent, JobEvent, JobStatus, ReindexJob
from tests.browser.servers import running_stack
from tests.hook_server import hook_server
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]


def test_web_process__alerts_an_awaiting_swap_and_its_swap_with_no_worker_running(
    make_corpus: Callable[..., Path],
    make_job: MakeJob,
    worker_env: dict[str, str],
    operator: User,
    tmp_path: Path,
) -> None:
    job = make_job(
        make_corpus(15), mode="swap", approve="manual", collection="webalerts", batch_size=5
    )
    # The worker runs first, with no subscriber: it leaves the job awaiting, and stops.
    call_command("reindex_worker", "--burst", "--worker-id", "w-gone")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL, job.error
    _, token = ApiToken.issue(operator, "web alerts")

    with hook_server() as hooks:
        env = {**worker_env, "REINDEXER_WEB_ALERTS": "on", "REINDEXER_WEBHOOK_URLS": hooks.url()}
        logs = tmp_path / "logs"
        logs.mkdir()
        with running_stack(env, logs, worker=False) as stack:
            wait_until(lambda: len(hooks.requests()) >= 1, what="daphne's awaiting alert")
            request = urllib.request.Request(  # noqa: S310 - daphne on 127.0.0.1
                f"{stack.base_url}/api/jobs/{job.pk}/approve/",
                data=b"{}",
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1
                assert answer.status == 200
                assert json.loads(answer.read())["status"] == "completed"
            wait_until(lambda: len(hooks.requests()) >= 2, what="daphne's completion alert")
            events = [r.body["event"] for r in hooks.requests()]

    assert events == [AlertEvent.AWAITING_APPROVAL, AlertEvent.COMPLETED]
    actors = set(JobEvent.objects.filter(job=job, kind="webhook").values_list("actor", flat=True))
    assert len(actors) == 1 and actors.pop().startswith("web-"), actors
