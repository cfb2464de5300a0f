"""A worker's batch tally: each duration in the first bucket whose bound it does not exceed (as
Prometheus reads `le`), snapshots summed across workers, other bucket layouts left out."""

from __future__ import annotations

import pytest

from reindexer.metrics.tally import BUCKETS, BatchTally, histogram, summed
from reindexer.signals import send_batch_committed


def observed(*seconds: float) -> dict[str, object]:
    tally = BatchTally()
    for s in seconds:
        tally.observe(s)
    return tally.snapshot()


def test_observe__a_duration_on_a_bound_counts_in_that_bound() -> None:
    snapshot = observed(0.005, 0.0051, 60.0, 61.0)
    buckets = snapshot["buckets"]
    assert isinstance(buckets, list) and len(buckets) == len(BUCKETS) + 1
    assert buckets[0] == 1  # 0.005 <= 0.005
    assert buckets[1] == 1  # 0.0051 <= 0.01
    assert buckets[BUCKETS.index(60.0)] == 1
    assert buckets[-1] == 1  # over every bound: +Inf only
    assert snapshot["sum"] == pytest.approx(0.005 + 0.0051 + 60.0 + 61.0)


def test_connect__counts_the_batches_the_engine_announces_until_disconnected() -> None:
    tally = BatchTally()
    tally.connect()
    try:
        for seconds in (0.2, 3.0):
            send_batch_committed(
                object, job=None, seconds=seconds, written=1, failed=0, skipped=0, retries=0
            )
    finally:
        tally.disconnect()
    send_batch_committed(object, job=None, seconds=9.0, written=1, failed=0, skipped=0, retries=0)
    buckets = tally.snapshot()["buckets"]
    assert isinstance(buckets, list) and sum(buckets) == 2


def test_summed__adds_the_workers_and_skips_a_foreign_layout() -> None:
    counts, total = summed([observed(0.01, 2.0), observed(0.01), {"buckets": [1, 2], "sum": 9}, {}])
    assert sum(counts) == 3 and counts[BUCKETS.index(0.01)] == 2
    assert total == pytest.approx(2.02)

    samples = {
        (s.name, tuple(s.labels.items())): s.value for s in histogram(counts, total, "h").samples
    }
    assert samples[("reindexer_batch_seconds_bucket", (("le", "0.01"),))] == 2
    assert samples[("reindexer_batch_seconds_bucket", (("le", "2.5"),))] == 3
    assert samples[("reindexer_batch_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("reindexer_batch_seconds_count", ())] == 3
