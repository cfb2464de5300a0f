"""Where sources may be read from: inside the allowed roots, with no `..`, no symbolic links and
no hard links."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import BinaryIO

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
    if not want_dir:
        refuse_hard_link(candidate, candidate.stat())


def refuse_hard_link(path: Path, st: os.stat_result) -> None:
    """Refuse a regular file with more than one link: a hard link cannot be told from its twin,
    which may lie outside the roots (a link to /etc/passwd reads /etc/passwd)."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise SourcePathError(
            f"source file {path} has {st.st_nlink} hard links; a source file with more than one"
            " hard link is refused, as its other names may lie outside the allowed roots"
        )


def open_source_file(path: Path) -> BinaryIO:
    """`path` opened for reading, if it is still the regular, singly linked file that was checked.

    The path's device and inode are compared with those of the file actually opened, so a file
    swapped in between the check and the open is refused; a symbolic link in its place fails to
    open. Raises SourcePathError, or OSError when it cannot be read at all.
    """
    checked = os.stat(path, follow_symlinks=False)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            raise SourcePathError(f"source file {path} was replaced while it was being opened")
        if not stat.S_ISREG(opened.st_mode):
            raise SourcePathError(f"source path is not a regular file: {path}")
        refuse_hard_link(path, opened)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
