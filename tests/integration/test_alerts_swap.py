"""The swap's alert: a manual-approval swap job that verified its collection alerts "awaiting
approval" to a real HTTP server, with its verification in the payload; the Swap that follows
alerts "completed"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reindexer.alerts.dispatcher import Dispatcher
from reindexer.models import AlertEvent, DeliveryState, JobStatus, ReindexJob, Webhook
from reindexer.swaps.actions import approve_swap
from tests.hook_server import hook_server
from tests.integration.alerts_support import FAST, drain

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]


def corpus(data_dir: Path, n: int) -> str:
    with (data_dir / "swap.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            words = " ".join(f"w{i * 8 + k}" for k in range(8))
            f.write(json.dumps({"id": f"doc-{i:04d}", "text": words}) + "\n")
    return "jsonl:swap.jsonl"


def test_awaiting_approval__alerts_with_the_verification_then_completed_after_the_swap(
    data_dir: Path, make_job: MakeJob, run_burst_worker: Callable[..., None]
) -> None:
    with hook_server() as hooks:
        Webhook.objects.create(
            url=hooks.url("/approvals"),
            events=[AlertEvent.AWAITING_APPROVAL, AlertEvent.COMPLETED],
        )
        job = make_job(
            corpus(data_dir, 30), mode="swap", approve="manual", collection="alerted", batch_size=10
        )
        run_burst_worker()
        job.refresh_from_db()
        assert job.status == JobStatus.AWAITING_APPROVAL, job.error

        dispatcher = Dispatcher("alerts-test", policy=FAST)
        drain(dispatcher)
        [waiting] = hooks.requests()
        assert waiting.body["event"] == AlertEvent.AWAITING_APPROVAL
        assert waiting.body["job"]["status"] == "awaiting_approval"
        assert waiting.body["job"]["verification"]["passed"] is True
        assert waiting.body["job"]["verification"]["collection"] == f"alerted__{job.pk}"
        assert waiting.body["url"].endswith(f"/jobs/{job.pk}/")

        approve_swap(job, actor="operator")
        drain(dispatcher)
        events = [r.body["event"] for r in hooks.requests()]
        assert events == [AlertEvent.AWAITING_APPROVAL, AlertEvent.COMPLETED]
        assert hooks.requests()[1].body["job"]["status"] == "completed"

    states = set(job.deliveries.values_list("state", flat=True))
    assert states == {DeliveryState.DELIVERED}
