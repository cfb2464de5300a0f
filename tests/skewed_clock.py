"""Run a Python script with this process's clock shifted, as on a host whose clock is off.

    python tests/skewed_clock.py --offset 600 manage.py reindex_worker --worker-id w-ahead

`time.time` and `django.utils.timezone.now` are shifted by OFFSET seconds (negative: behind)
before Django starts, so every wall-clock reading of the worker's Python code is skewed, while
the job database keeps its own clock: PostgreSQL's server, or SQLite's C library (which reads
the system clock, not Python's). The monotonic clock is left alone: it has no epoch to skew.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def skew(offset_seconds: float) -> None:
    """Shift this process's wall clock by `offset_seconds`, for Python code and Django alike."""
    real_time = time.time
    shift = timedelta(seconds=offset_seconds)

    def skewed_time() -> float:
        return real_time() + offset_seconds

    time.time = skewed_time

    from django.utils import timezone

    real_now = timezone.now

    def skewed_now() -> datetime:
        return real_now() + shift

    # Model fields capture `timezone.now` as their default when their module is imported, which
    # happens after this, at django.setup().
    timezone.now = skewed_now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offset", type=float, required=True, help="seconds; negative: behind")
    parser.add_argument("script", help="the script to run, e.g. manage.py")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    skew(options.offset)
    script = Path(options.script)
    if not script.is_absolute():
        script = REPO_ROOT / script
    sys.stderr.write(f"skewed_clock: wall clock shifted by {options.offset:+g} s\n")
    sys.argv = [str(script), *options.args]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
