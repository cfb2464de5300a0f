"""The demo corpus: real text already on the machine, the installed packages' descriptions."""

from __future__ import annotations

import email.parser
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
MIN_PARAGRAPH_CHARS = 40


def _metadata_files() -> Iterator[Path]:
    seen: set[Path] = set()
    for entry in sys.path:
        folder = Path(entry)
        if folder.is_dir():
            for path in sorted(folder.glob("*.dist-info/METADATA")):
                if path not in seen:
                    seen.add(path)
                    yield path


def package_descriptions() -> Iterator[tuple[str, str, str]]:
    """(name, version, description) of each installed distribution, description not empty."""
    parser = email.parser.Parser()
    for path in _metadata_files():
        try:
            message = parser.parsestr(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        name = message.get("Name")
        body = message.get_payload()
        text = body if isinstance(body, str) and body.strip() else message.get("Description", "")
        summary = message.get("Summary", "")
        if name and (text or summary):
            yield name, message.get("Version", ""), f"{summary}\n\n{text}".strip()


def write_demo_corpus(target: Path) -> tuple[Path, Path, int]:
    """Write `packages.jsonl` (a document per paragraph) and `packages/` (a file per package)."""
    target.mkdir(parents=True, exist_ok=True)
    jsonl = target / "packages.jsonl"
    folder = target / "packages"
    folder.mkdir(exist_ok=True)
    count = 0
    with jsonl.open("w", encoding="utf-8") as out:
        for name, version, description in package_descriptions():
            (folder / f"{name.lower()}.md").write_text(f"# {name} {version}\n\n{description}\n")
            paragraphs = [p.strip() for p in PARAGRAPH_BREAK.split(description)]
            for n, paragraph in enumerate(p for p in paragraphs if len(p) >= MIN_PARAGRAPH_CHARS):
                doc = {
                    "id": f"{name.lower()}#{n}",
                    "text": paragraph,
                    "metadata": {"package": name, "version": version, "paragraph": n},
                }
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                count += 1
    return jsonl, folder, count
