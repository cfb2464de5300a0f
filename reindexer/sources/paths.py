"""Where sources may be read from: inside the allowed roots, with no `..` and no symbolic links."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath

from reindexer.errors import SourcePathError


def resolve_source_path(raw: str, roots: Sequence[Path], *, want_dir: bool) -> Path:
    """The absolute path that `raw` names, or a SourcePathError saying why it is refused.

    A relative path is taken from the first root.
    """
    if not raw:
        raise SourcePathError("the source path is empty")
    if "\x00" in raw:
        raise SourcePathError("the source path contains a NUL byte")
    if ".." in PurePath(raw).parts:
        raise SourcePathError(f"source path {raw!r} must not contain '..'")
    candidate = Path(raw) if os.path.isabs(raw) else roots[0] / raw
    candidate = Path(os.path.normpath(candidate))
    root = next((r for r in roots if candidate.is_relative_to(r)), None)
    if root is None:
        allowed = ", ".join(str(r) for r in roots)
        raise SourcePathError(f"source path {raw!r} is outside the allowed roots ({allowed})")
    try:
        _check_components(raw, root, candidate, want_dir=want_dir)
    except OSError as exc:  # a name too long, a permission denied on a parent...
        raise SourcePathError(f"source path {raw!r} cannot be used: {exc.strerror}") from None
    return candidate


def _check_components(raw: str, root: Path, candidate: Path, *, want_dir: bool) -> None:
    # Every component below the root must be a real directory or file, not a link.
    current = root
    for part in candidate.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise SourcePathError(f"source path {raw!r} goes through a symbolic link ({current})")
    if not candidate.exists():
        raise SourcePathError(f"source {'folder' if want_dir else 'file'} not found: {candidate}")
    if want_dir and not candidate.is_dir():
        raise SourcePathError(f"source path is not a folder: {candidate}")
    if not want_dir and not candidate.is_file():
        raise SourcePathError(f"source path is not a file: {candidate}")
