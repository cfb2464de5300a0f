"""The relay's bookkeeping of which row versions it already published."""

from __future__ import annotations

from django.utils import timezone

from dashboard import relay


def test_relay_tracker__rereads_an_overlap_and_publishes_each_version_once() -> None:
    start = timezone.now()
    tracker = relay.ChangeTracker(since=start)
    t1, t2 = start + relay.OVERLAP / 4, start + relay.OVERLAP / 2
    assert tracker.changed([(1, t1), (2, t2)]) == [1, 2]
    assert tracker.cutoff == t2 - relay.OVERLAP
    # A later-committed row stamped before the newest one seen is still inside the overlap.
    assert tracker.changed([(3, t1), (1, t1), (2, t2)]) == [3]
    assert tracker.changed([(1, t2)]) == [1]
