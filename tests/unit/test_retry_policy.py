"""RetryPolicy: exponential backoff with equal jitter, and the circuit breaker's threshold."""

from __future__ import annotations

import random

import pytest

from reindexer.batching import RetryPolicy

SAMPLES = 200


def delays(policy: RetryPolicy, attempt: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [policy.delay(attempt, rng) for _ in range(SAMPLES)]


def ceiling(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.backoff_cap_seconds, policy.backoff_seconds * 2.0 ** (attempt - 1))


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_delay__lies_between_half_the_ceiling_and_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(backoff_seconds=0.1, backoff_cap_seconds=100.0)
    top = 0.1 * 2 ** (attempt - 1)
    for delay in delays(policy, attempt):
        assert top / 2 <= delay <= top


def test_delay__jitter_spreads_over_the_upper_half() -> None:
    policy = RetryPolicy(backoff_seconds=1.0, backoff_cap_seconds=100.0)
    sample = delays(policy, 1)
    assert len(set(sample)) == SAMPLES
    assert min(sample) < 0.6 and max(sample) > 0.9


def test_delay__ceiling_doubles_with_each_attempt() -> None:
    policy = RetryPolicy(backoff_seconds=0.25, backoff_cap_seconds=1000.0)
    # The same random draws at every attempt: each delay is exactly twice the one before.
    by_attempt = [delays(policy, attempt) for attempt in range(1, 7)]
    for earlier, later in zip(by_attempt, by_attempt[1:], strict=False):
        assert later == pytest.approx([2 * d for d in earlier])


def test_delay__is_capped_at_backoff_cap_seconds() -> None:
    policy = RetryPolicy(backoff_seconds=0.1, backoff_cap_seconds=0.5)
    assert ceiling(policy, 3) == pytest.approx(0.4)
    assert ceiling(policy, 4) == 0.5
    for attempt in (4, 10, 50, 1000):
        for delay in delays(policy, attempt):
            assert 0.25 <= delay <= 0.5


def test_delay__is_deterministic_for_a_seeded_generator() -> None:
    policy = RetryPolicy()
    assert delays(policy, 3, seed=42) == delays(policy, 3, seed=42)
    assert delays(policy, 3, seed=42) != delays(policy, 3, seed=43)


@pytest.mark.parametrize(
    ("max_retries", "threshold"),
    [(0, 8), (1, 8), (2, 9), (3, 12), (5, 18), (10, 33)],
)
def test_breaker_threshold__is_three_groups_of_attempts_and_never_below_eight(
    max_retries: int, threshold: int
) -> None:
    assert RetryPolicy(max_retries=max_retries).breaker_threshold == threshold


def test_breaker_threshold__exceeds_the_attempts_of_one_group() -> None:
    # One group's attempts alone (the first try and every retry) never trip the breaker.
    for max_retries in range(21):
        policy = RetryPolicy(max_retries=max_retries)
        assert policy.breaker_threshold > max_retries + 1
