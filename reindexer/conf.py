"""Typed access to the REINDEXER_* settings, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class ReindexerSettings:
    data_dir: Path
    source_roots: tuple[Path, ...]
    lease_seconds: float
    heartbeat_seconds: float
    retry_backoff_seconds: float = 0.1
    redis_url: str | None = None

    @classmethod
    def from_environ(cls) -> ReindexerSettings:
        data_dir = Path(os.environ.get("REINDEXER_DATA_DIR", "var")).resolve()
        roots_raw = os.environ.get("REINDEXER_SOURCE_ROOTS", "")
        roots = tuple(Path(p).resolve() for p in roots_raw.split(":") if p) or (data_dir,)
        lease = _positive_float("REINDEXER_LEASE_SECONDS", 30.0)
        heartbeat = _positive_float("REINDEXER_HEARTBEAT_SECONDS", 5.0)
        if heartbeat > lease / 2:
            # Otherwise one late beat makes a live job look stalled, and another worker takes it.
            raise ValueError(
                f"REINDEXER_HEARTBEAT_SECONDS ({heartbeat:g}) must be at most half of "
                f"REINDEXER_LEASE_SECONDS ({lease:g})"
            )
        return cls(
            data_dir=data_dir,
            source_roots=roots,
            lease_seconds=lease,
            heartbeat_seconds=heartbeat,
            retry_backoff_seconds=_positive_float("REINDEXER_RETRY_BACKOFF_SECONDS", 0.1),
            redis_url=os.environ.get("REDIS_URL") or None,
        )


def get() -> ReindexerSettings:
    """The settings in force, as Django's settings module resolved them."""
    from django.conf import settings

    value: ReindexerSettings = settings.REINDEXER
    return value
