"""The pacer on a fake clock: a batch's documents cost docs / limit seconds, a slow job never
waits, a changed or lifted limit reprices the wait, and a stop ends it."""

from __future__ import annotations

import threading
import time

import pytest

from reindexer.pacing import CATCH_UP_SECONDS, Check, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TickingEvent(threading.Event):
    """An event whose wait advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


def run(
    pacer: Pacer, clock: FakeClock, batches: int, docs: int, limit: float, work: float
) -> float:
    """Run `batches` batches taking `work` seconds each under `limit`; the measured rate."""
    event = TickingEvent(clock)
    start = clock.now
    for _ in range(batches):
        assert pacer.wait(event, 0.25, lambda: Check(limit))
        began = clock.now
        clock.now += work
        pacer.charge(docs, limit, began)
    return batches * docs / (clock.now - start)


@pytest.mark.parametrize(
    ("limit", "docs"), [(50, 10), (200, 50), (1000, 100), (1000, 200), (5, 50), (0.1, 10)]
)
def test_pacer__holds_a_fast_job_at_its_limit(limit: float, docs: int) -> None:
    clock = FakeClock()
    rate = run(Pacer(clock), clock, batches=40, docs=docs, limit=limit, work=0.002)
    # The last batch's cost is not waited for, so the rate runs a hair above over few batches.
    assert limit * 0.97 <= rate <= limit * 40 / 39 + 1e-9


def test_pacer__a_job_slower_than_its_limit_never_waits_nor_bursts_after() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.charge(100, 1000, began=clock.now)
    clock.now += 1.0  # the batch took 1 s: ten times its cost
    assert pacer.left() == 0
    began = clock.now
    clock.now += 0.01
    pacer.charge(100, 1000, began)
    # Charged from when it began, not from the schedule it fell behind: no catch-up burst.
    assert pacer.allowed_at() == pytest.approx(began + 0.1)


def test_pacer__absorbs_lateness_up_to_its_catch_up_credit() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.charge(100, 1000, began=clock.now)
    scheduled = pacer.allowed_at()
    assert scheduled is not None
    late = scheduled + CATCH_UP_SECONDS / 2  # the timer woke a little late
    pacer.charge(100, 1000, began=late)
    assert pacer.allowed_at() == pytest.approx(scheduled + 0.1)


def test_pacer__without_a_limit_never_waits() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.charge(10_000, None, began=clock.now)
    assert pacer.left() == 0 and pacer.allowed_at() is None


def test_pacer__a_limit_below_one_batch_a_second_waits_between_batches() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.charge(10, 0.5, began=clock.now)
    assert pacer.left() == pytest.approx(20.0)
    event = TickingEvent(clock)
    assert pacer.wait(event, 0.25, lambda: Check(0.5))
    # It polled in steps of the poll interval, re-reading the limit each time.
    assert len(event.waits) == 80 and max(event.waits) == 0.25
    assert pacer.paced_seconds == pytest.approx(20.0)


def test_pacer__a_changed_limit_reprices_the_wait_and_a_lifted_one_ends_it() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    began = clock.now
    pacer.charge(100, 1.0, began)  # 100 s to wait
    limits = iter([1.0, 10.0, None])
    event = TickingEvent(clock)
    assert pacer.wait(event, 1.0, lambda: Check(next(limits)))
    # After the second step 10/s makes the batch cost 10 s (8 left); after the third the
    # limit is lifted, and the wait ends there.
    assert len(event.waits) == 3
    assert clock.now - began == pytest.approx(3.0)


def test_pacer__a_stop_ends_the_wait_at_once() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.charge(10, 0.1, began=clock.now)
    event = TickingEvent(clock)
    assert not pacer.wait(event, 0.25, lambda: Check(0.1, stop=True))
    assert len(event.waits) == 1


def test_pacer__a_ring_wakes_the_wait_before_its_poll() -> None:
    pacer = Pacer()
    pacer.charge(10, 0.01, began=time.monotonic())  # 1000 s to wait, on the real clock
    bell = threading.Event()
    bell.set()  # rung before the wait: the news is read at once
    checks: list[int] = []

    def check() -> Check:
        checks.append(1)
        bell.clear()
        return Check(None)  # the limit was lifted

    assert pacer.wait(bell, 60.0, check)
    assert checks == [1]
