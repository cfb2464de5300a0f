"""How closely the live throttle (`max_docs_per_second`) holds 50, 200 and 1,000 docs/s.

    .venv/bin/python bench/throttle.py [--rates 50,200,1000] [--windows 2] [--window-seconds 20]

For each rate a real job (create_job + an in-process burst worker on a thread, the hashing
embedder, a fresh sqlite-vec collection, SQLite job database, a generated JSONL corpus larger
than the run needs) runs under that limit while this thread polls the job's processed_docs
every POLL_SECONDS. After WARMUP_SECONDS from its first commit, each window's rate is the
documents committed in it over its length; its ratio is that over the limit. The job is then
cancelled. The batch size is a tenth of a second's worth at the limit, at least 10 (50 -> 10,
200 -> 20, 1,000 -> 100): a few commits per second at every rate.

Then the live change: a job runs at 200 docs/s for one window, its limit goes to 1,000 through
set_throttle (as the dashboard and `reindex throttle` do), and the run reports the 1-s windows
after the change: how long until every later one holds the new rate within TOLERANCE, and the
ratio of the whole window after it. SQLite has no NOTIFY: the engine reads the new limit at its
next batch commit (or its next poll while pacing).

Exits 1 when a window's ratio is off by more than TOLERANCE.
"""

from __future__ import annotations

import argparse
import bisect
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOLERANCE = 0.05
POLL_SECONDS = 0.02
WARMUP_SECONDS = 1.0
SETTLE_WINDOW = 1.0  # the live change's sliding windows
SETTLE_STEP = 0.1
CHANGE = (200.0, 1000.0)

# The same Django set-up and corpus as the other issue-11 benches.
from bench.support import setup_django, write_corpus  # noqa: E402


def batch_size_for(rate: float) -> int:
    return max(10, round(rate / 10))


@dataclass
class Series:
    """The job's processed_docs as polled: (monotonic seconds, count) at each change."""

    times: list[float]
    counts: list[int]

    def at(self, t: float) -> int:
        """The count committed by `t` (as the last poll at or before it saw)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.counts[i] if i >= 0 else 0

    def rate(self, start: float, end: float) -> float:
        return (self.at(end) - self.at(start)) / (end - start)


class RunningJob:
    """A job under a limit, run by a burst worker on a thread; polled from this thread."""

    def __init__(self, data_dir: Path, name: str, limit: float, docs: int) -> None:
        from reindexer.jobs import create_job
        from reindexer.specs import JobSpec
        from reindexer.worker import Worker, WorkerOptions

        corpus = data_dir / f"{name}.jsonl"
        write_corpus(corpus, docs)
        self.batch_size = batch_size_for(limit)
        self.job = create_job(
            JobSpec(
                source=f"jsonl:{corpus.name}",
                embedder="hashing",
                store="sqlite-vec",
                collection=name,
                batch_size=self.batch_size,
                max_docs_per_second=limit,
            )
        )
        self.worker = Worker(WorkerOptions(worker_id=f"bench-{name}", burst=True))
        self.thread = threading.Thread(target=self.worker.run, name=f"worker-{name}")
        self.series = Series([], [])
        self.thread.start()

    def processed(self) -> int:
        from reindexer.models import ReindexJob

        return ReindexJob.objects.values_list("processed_docs", flat=True).get(pk=self.job.pk)

    def poll_until(self, deadline: float) -> None:
        while (now := time.monotonic()) < deadline:
            count = self.processed()
            if not self.series.counts or count != self.series.counts[-1]:
                self.series.times.append(now)
                self.series.counts.append(count)
            time.sleep(POLL_SECONDS)

    def first_commit(self, timeout: float = 30.0) -> float:
        self.poll_until(time.monotonic() + 0.0)
        deadline = time.monotonic() + timeout
        while not self.series.counts or self.series.counts[-1] == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {self.job.pk} committed nothing in {timeout:g} s")
            self.poll_until(time.monotonic() + POLL_SECONDS)
        return self.series.times[-1]

    def finish(self) -> None:
        from reindexer.jobs import cancel_job
        from reindexer.models import ReindexJob

        job = ReindexJob.objects.get(pk=self.job.pk)
        if job.status != "running":
            raise RuntimeError(f"job {job.pk} ended {job.status} before the run did: {job.error}")
        cancel_job(job)
        self.thread.join(timeout=60)
        if self.thread.is_alive():
            raise RuntimeError(f"job {job.pk}'s worker did not stop")


@dataclass(frozen=True)
class Window:
    label: str
    target: float
    batch_size: int
    start: float  # seconds since the measurement began
    rate: float

    @property
    def ratio(self) -> float:
        return self.rate / self.target


def steady(data_dir: Path, rate: float, windows: int, length: float) -> list[Window]:
    span = WARMUP_SECONDS + windows * length
    run = RunningJob(data_dir, f"steady_{int(rate)}", rate, docs=int(rate * span * 1.5) + 1000)
    t0 = run.first_commit() + WARMUP_SECONDS
    run.poll_until(t0 + windows * length + POLL_SECONDS)
    run.finish()
    return [
        Window(
            f"{rate:g}",
            rate,
            run.batch_size,
            i * length,
            run.series.rate(t0 + i * length, t0 + (i + 1) * length),
        )
        for i in range(windows)
    ]


@dataclass(frozen=True)
class Change:
    before: Window
    after: Window
    settled: float | None  # seconds after the change from which every 1-s window held
    first_second: float  # ratio to the new limit of the first 1-s window after the change


def live_change(data_dir: Path, length: float) -> Change:
    from reindexer.jobs import set_throttle
    from reindexer.models import ReindexJob

    old, new = CHANGE
    docs = int(old * (WARMUP_SECONDS + length) * 1.5 + new * length * 1.5) + 1000
    run = RunningJob(data_dir, "live_change", old, docs=docs)
    t0 = run.first_commit() + WARMUP_SECONDS
    run.poll_until(t0 + length)
    changed = time.monotonic()
    set_throttle(ReindexJob.objects.get(pk=run.job.pk), new, user=None)
    run.poll_until(changed + length + POLL_SECONDS)
    run.finish()
    series = run.series
    before = Window(f"{old:g} (before)", old, run.batch_size, 0.0, series.rate(t0, t0 + length))
    after = Window(
        f"-> {new:g} (after)",
        new,
        run.batch_size,
        changed - t0,
        series.rate(changed, changed + length),
    )
    starts = [changed + i * SETTLE_STEP for i in range(int((length - SETTLE_WINDOW) / SETTLE_STEP))]
    held = [abs(series.rate(s, s + SETTLE_WINDOW) / new - 1) <= TOLERANCE for s in starts]
    settled = None
    for i in range(len(held)):
        if all(held[i:]):
            settled = starts[i] - changed
            break
    first = series.rate(changed, changed + SETTLE_WINDOW) / new
    return Change(before, after, settled, first)


def print_table(windows: list[Window], length: float) -> None:
    print(f"  {'limit':>18} {'batch':>6} {'window':>13} {'docs/s':>9} {'ratio':>7}")
    for w in windows:
        span = f"{w.start:5.1f}-{w.start + length:5.1f}s"
        print(f"  {w.label:>18} {w.batch_size:>6} {span:>13} {w.rate:9.1f} {w.ratio:7.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50,200,1000")
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--window-seconds", type=float, default=20.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    length = args.window_seconds
    with tempfile.TemporaryDirectory(prefix="bench-throttle-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        windows = [w for rate in rates for w in steady(data_dir, rate, args.windows, length)]
        change = live_change(data_dir, length)
    print(
        f"live throttle, hashing + sqlite-vec, SQLite job DB, {length:g} s windows"
        f" after a {WARMUP_SECONDS:g} s warm-up, batch = max(10, limit/10)"
    )
    print_table(windows, length)
    ratios = [w.ratio for w in windows]
    print(
        f"  over the run: mean ratio {sum(ratios) / len(ratios):.3f},"
        f" min {min(ratios):.3f}, max {max(ratios):.3f} (tolerance +/-{TOLERANCE:.0%})"
    )
    print(f"live change {CHANGE[0]:g} -> {CHANGE[1]:g} docs/s (set_throttle mid-run):")
    print_table([change.before, change.after], length)
    settled = "never" if change.settled is None else f"{change.settled:.1f} s"
    print(
        f"  first {SETTLE_WINDOW:g} s after the change: ratio {change.first_second:.3f};"
        f" every {SETTLE_WINDOW:g} s window within {TOLERANCE:.0%} from +{settled} on"
    )
    checked = [*ratios, change.before.ratio, change.after.ratio]
    return 0 if all(abs(r - 1) <= TOLERANCE for r in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
