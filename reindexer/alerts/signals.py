"""A job's end committed in this process wakes its dispatchers at once.

Only a shortcut: the dispatcher's sweep finds every event anyway (one committed elsewhere, or
just before a crash), within its interval.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from reindexer.alerts.events import ALERTING_KINDS
from reindexer.models import JobEvent


def _on_event_saved(sender: type[JobEvent], instance: JobEvent, created: bool, **_: Any) -> None:
    if created and instance.kind in ALERTING_KINDS:
        from reindexer.alerts.dispatcher import wake_all

        transaction.on_commit(wake_all)


def connect() -> None:
    post_save.connect(_on_event_saved, sender=JobEvent, dispatch_uid="reindexer.alerts.wake")
