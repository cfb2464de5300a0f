"""TrailingThrottle: one send per key per window, and the last state always follows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from reindexer.throttle import TrailingThrottle

WINDOW = 0.05


class Screen:
    """What a send would show: a mutable state per key, and the states sent, in order."""

    def __init__(self) -> None:
        self.state: dict[str, int] = {}
        self.sent: list[tuple[str, int]] = []

    def sender(self, key: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            self.sent.append((key, self.state[key]))

        return send


async def submit(throttle: TrailingThrottle[str], screen: Screen, key: str, state: int) -> None:
    screen.state[key] = state
    await throttle.submit(key, screen.sender(key))


async def past_the_window() -> None:
    await asyncio.sleep(WINDOW * 3)


@pytest.mark.asyncio
async def test_submit__first_send_goes_at_once() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    assert screen.sent == [("a", 1)]
    assert throttle.pending == frozenset()


@pytest.mark.asyncio
async def test_submit__inside_the_window_sends_once_at_its_end_with_the_latest_state() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    for state in range(1, 6):
        await submit(throttle, screen, "a", state)
    assert screen.sent == [("a", 1)]
    assert throttle.pending == {"a"}
    await throttle.drain()
    assert screen.sent == [("a", 1), ("a", 5)]
    assert throttle.pending == frozenset()


@pytest.mark.asyncio
async def test_submit__deferred_send_runs_the_latest_send_submitted() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    calls: list[str] = []

    def sender(label: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            calls.append(label)

        return send

    for label in ("first", "second", "third"):
        await throttle.submit("a", sender(label))
    await throttle.drain()
    assert calls == ["first", "third"]


@pytest.mark.asyncio
async def test_submit__after_the_window_sends_at_once() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    await past_the_window()
    await submit(throttle, screen, "a", 2)
    assert screen.sent == [("a", 1), ("a", 2)]
    assert throttle.pending == frozenset()


@pytest.mark.asyncio
async def test_submit__after_a_trailing_send_starts_a_new_window() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    await submit(throttle, screen, "a", 2)
    await throttle.drain()
    await submit(throttle, screen, "a", 3)  # right after the trailing send: deferred again
    assert screen.sent == [("a", 1), ("a", 2)]
    await throttle.drain()
    assert screen.sent == [("a", 1), ("a", 2), ("a", 3)]


@pytest.mark.asyncio
async def test_submit__keys_have_windows_of_their_own() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    await submit(throttle, screen, "b", 1)
    await submit(throttle, screen, "a", 2)
    assert screen.sent == [("a", 1), ("b", 1)]
    await throttle.drain()
    assert screen.sent == [("a", 1), ("b", 1), ("a", 2)]


@pytest.mark.asyncio
async def test_force__sends_at_once_inside_the_window() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    screen.state["a"] = 2
    await throttle.submit("a", screen.sender("a"), force=True)
    assert screen.sent == [("a", 1), ("a", 2)]


@pytest.mark.asyncio
async def test_note_sent__defers_the_next_submit() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    throttle.note_sent("a")
    await submit(throttle, screen, "a", 1)
    assert screen.sent == []
    await throttle.drain()
    assert screen.sent == [("a", 1)]


@pytest.mark.asyncio
async def test_close__drops_pending_sends() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    await submit(throttle, screen, "a", 1)
    await submit(throttle, screen, "a", 2)
    await submit(throttle, screen, "b", 1)
    await submit(throttle, screen, "b", 2)
    throttle.close()
    assert throttle.pending == frozenset()
    await past_the_window()
    assert screen.sent == [("a", 1), ("b", 1)]


@pytest.mark.asyncio
async def test_cancel__drops_only_that_keys_pending_send() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()
    for key in ("a", "b"):
        await submit(throttle, screen, key, 1)
        await submit(throttle, screen, key, 2)
    throttle.cancel("a")
    await throttle.drain()
    assert screen.sent == [("a", 1), ("b", 1), ("b", 2)]


@pytest.mark.asyncio
async def test_deferred_send__failure_is_logged_and_the_key_sends_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW)
    screen = Screen()

    async def broken() -> None:
        raise RuntimeError("render failed")

    await submit(throttle, screen, "a", 1)
    await throttle.submit("a", broken)
    await throttle.drain()
    assert "deferred send for a failed" in caplog.text
    await past_the_window()
    await submit(throttle, screen, "a", 2)
    assert screen.sent == [("a", 1), ("a", 2)]


@pytest.mark.asyncio
async def test_memory__forgets_keys_whose_window_closed() -> None:
    throttle: TrailingThrottle[str] = TrailingThrottle(WINDOW, memory=3)
    screen = Screen()
    for key in ("a", "b", "c", "d"):
        await submit(throttle, screen, key, 1)
    await past_the_window()
    await submit(throttle, screen, "e", 1)  # over the bound: the closed windows are dropped
    assert len(throttle._last) == 1
    assert screen.sent == [(key, 1) for key in "abcde"]
