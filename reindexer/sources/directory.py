"""`directory:PATH`: the *.txt, *.md, *.html and *.htm files below a folder, and its *.pdf files
where pypdf (the extra `[pdf]`) is installed, in path order. Their text comes from extract.py."""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reindexer.documents import Document, Malformed, Record
from reindexer.errors import SourcePathError, SourceUnavailable
from reindexer.sources.base import Bounds, Checkpoint, SourceSlice
from reindexer.sources.extract import PDF_SUFFIXES, SUFFIXES, Unreadable, extract
from reindexer.sources.paths import open_source_file

__all__ = ["SUFFIXES", "DirectorySource", "DirectoryReader"]

logger = logging.getLogger(__name__)


class DirectorySource:
    def __init__(self, spec: str, root: Path) -> None:
        self.spec = spec
        self.root = root

    def paths(self) -> list[str]:
        """Relative POSIX paths of the files to index, sorted; links are listed, not followed."""
        if not self.root.is_dir():
            raise SourceUnavailable(f"source folder is gone: {self.root}")
        found: list[str] = []
        left_out = 0
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            for name in filenames:
                suffix = Path(name).suffix.lower()
                if suffix in SUFFIXES:
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
                elif suffix in PDF_SUFFIXES:
                    left_out += 1
        if left_out:  # only without pypdf: with it, PDFs are in SUFFIXES
            logger.warning(
                "%s: %d PDF files left out: they need pypdf (pip install 'reindexer[pdf]')",
                self.spec,
                left_out,
            )
        found.sort()
        return found

    def count(self) -> int:
        return len(self.paths())

    def split(self, slices: int) -> list[SourceSlice]:
        """Ranges of the sorted paths: a slice holds the paths after `after` (its start, null
        for the first) up to and including `upto` (null for the last)."""
        paths = self.paths()
        parts = max(1, min(slices, len(paths)))
        starts = [len(paths) * k // parts for k in range(parts + 1)]
        return [
            SourceSlice(
                {
                    "after": paths[a - 1] if a > 0 else None,
                    "upto": paths[b - 1] if k < parts - 1 else None,
                },
                b - a,
            )
            for k, (a, b) in enumerate(zip(starts, starts[1:], strict=False))
        ]

    def open(
        self, checkpoint: Checkpoint | None = None, *, bounds: Bounds | None = None
    ) -> DirectoryReader:
        paths = self.paths()
        # A slice's range is by path, not by index, for the same reason as the checkpoint.
        upto = (bounds or {}).get("upto")
        if isinstance(upto, str):
            paths = paths[: bisect.bisect_right(paths, upto)]
        last = (checkpoint or {}).get("last", (bounds or {}).get("after"))
        # Resume after the last path handed out, not at an index: files added or removed while
        # the job was stopped would shift an index and skip or repeat documents.
        start = bisect.bisect_right(paths, last) if isinstance(last, str) else 0
        return DirectoryReader(self.root, paths, start, last if isinstance(last, str) else None)


class DirectoryReader:
    retries = 0  # local files are never retried

    def __init__(self, root: Path, paths: list[str], start: int, last: str | None = None) -> None:
        self._root = root
        self._paths = paths
        self._index = start
        # The position it started after, even if that file is gone: stepping back to an earlier
        # path would let a slice re-read files of the slice before it.
        self._last: str | None = last if last is not None else (paths[start - 1] if start else None)

    def read_batch(self, size: int) -> list[Record]:
        paths = self._paths[self._index : self._index + size]
        self._index += len(paths)
        if paths:
            self._last = paths[-1]
        return [self._read(rel) for rel in paths]

    def __iter__(self) -> Iterator[Record]:
        while self._index < len(self._paths):
            rel = self._last = self._paths[self._index]
            self._index += 1
            yield self._read(rel)

    def _read(self, rel: str) -> Record:
        path = self._root / rel
        if path.is_symlink():
            return Malformed(rel, rel, f"{rel}: symbolic link not followed")
        try:
            with open_source_file(path) as f:
                data = f.read()
        except SourcePathError as exc:  # a hard link, or a file swapped in since it was listed
            return Malformed(rel, rel, f"{rel}: refused ({exc})")
        except FileNotFoundError:
            return Malformed(rel, rel, f"{rel}: file vanished before it was read")
        except OSError as exc:
            if not self._root.is_dir():
                raise SourceUnavailable(f"source folder is gone: {self._root}") from exc
            return Malformed(rel, rel, f"{rel}: unreadable ({exc.strerror})")
        try:
            extracted = extract(rel, data)
        except Unreadable as exc:
            return Malformed(rel, rel, f"{rel}: {exc.reason}", exc.shown)
        metadata = {"path": rel, "bytes": len(data), **extracted.metadata}
        return Document(rel, extracted.text, metadata, rel)

    def checkpoint(self) -> dict[str, Any]:
        return {"last": self._last} if self._last is not None else {}

    def close(self) -> None:
        self._paths = []
