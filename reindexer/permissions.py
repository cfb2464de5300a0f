"""The permission names, defined once: who may see jobs, and who may operate them."""

from __future__ import annotations

from typing import Any

OPERATE_CODENAME = "operate_reindexjob"
VIEW = "reindexer.view_reindexjob"
OPERATE = f"reindexer.{OPERATE_CODENAME}"


def can_view(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm(VIEW))


def can_operate(user: Any) -> bool:
    """Create, cancel and retry jobs."""
    return bool(user is not None and user.is_authenticated and user.has_perm(OPERATE))
